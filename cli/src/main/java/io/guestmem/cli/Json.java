package io.guestmem.cli;

import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;

/**
 * The one JSON writer of the command: Jackson over records (component names become field names, in
 * declaration order). Documents are pretty-printed; large arrays are streamed through a
 * {@link JsonGenerator} from {@link #generator} so a listing of millions of pages is never held in memory.
 */
public final class Json {
    private Json() {}

    /** Shared, thread-safe once configured. Records serialize by their components. */
    public static final ObjectMapper MAPPER = new ObjectMapper()
            .enable(SerializationFeature.INDENT_OUTPUT)
            .disable(SerializationFeature.FAIL_ON_EMPTY_BEANS);

    /** Writes {@code value} as one JSON document followed by a newline, and flushes. */
    public static void write(PrintWriter out, Object value) {
        try {
            MAPPER.writerWithDefaultPrettyPrinter().writeValue(new NonClosing(out), value);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        out.println();
        out.flush();
    }

    /** A pretty-printing generator over {@code out} for documents written piece by piece; close it when done. */
    public static JsonGenerator generator(PrintWriter out) {
        try {
            JsonGenerator g = MAPPER.getFactory().createGenerator(new NonClosing(out));
            g.setCodec(MAPPER);
            g.useDefaultPrettyPrinter();
            return g;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Jackson closes the writer it is given; stdout must stay open for the rest of the command. */
    private static final class NonClosing extends java.io.FilterWriter {
        NonClosing(PrintWriter out) {
            super(out);
        }

        @Override
        public void close() {
            try {
                flush();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }
}
