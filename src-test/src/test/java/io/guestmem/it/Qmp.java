package io.guestmem.it;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.guestmem.testsupport.QemuGuest;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.time.Duration;

/** QEMU's machine protocol on a {@link QemuGuest}'s QMP socket: one JSON object per line; events are skipped. */
final class Qmp implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();
    private final SocketChannel ch;
    private final BufferedReader in;

    /** Connects (waiting for QEMU to create the socket) and negotiates capabilities. */
    Qmp(QemuGuest guest) throws IOException, InterruptedException {
        long end = System.nanoTime() + Duration.ofSeconds(20).toNanos();
        while (!Files.exists(guest.qmpSocket())) {
            if (System.nanoTime() > end) throw new AssertionError("no QMP socket\n" + guest.report());
            Thread.sleep(50);
        }
        ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        ch.connect(UnixDomainSocketAddress.of(guest.qmpSocket()));
        in = new BufferedReader(new InputStreamReader(Channels.newInputStream(ch), StandardCharsets.UTF_8));
        in.readLine(); // the greeting
        execute("qmp_capabilities", null);
    }

    /** Runs {@code command}; its {@code return}, or an AssertionError with QEMU's error. */
    JsonNode execute(String command, Object arguments) throws IOException {
        var req = JSON.createObjectNode().put("execute", command);
        if (arguments != null) req.set("arguments", JSON.valueToTree(arguments));
        ch.write(ByteBuffer.wrap((JSON.writeValueAsString(req) + "\n").getBytes(StandardCharsets.UTF_8)));
        while (true) {
            String line = in.readLine();
            if (line == null) throw new IOException("QMP closed during " + command);
            JsonNode m = JSON.readTree(line);
            if (m.has("event")) continue;
            if (m.has("error")) throw new AssertionError("QMP " + command + ": " + m.get("error"));
            return m.get("return");
        }
    }

    @Override
    public void close() throws IOException {
        ch.close();
    }
}
