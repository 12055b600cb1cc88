package io.guestmem.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.List;
import org.junit.jupiter.api.Test;

class JsonTest {
    record Slot(int id, String backing, Long pfn, List<String> flags) {}

    @Test
    void recordsRoundTripAndTheWriterStaysOpen() throws Exception {
        StringWriter w = new StringWriter();
        PrintWriter out = new PrintWriter(w);
        Json.write(out, new Slot(3, "hugetlb-2M", null, List.of("HUGE")));
        out.print("after");           // stdout must survive Jackson's close
        out.flush();
        String text = w.toString();
        assertTrue(text.endsWith("}\nafter"), text);
        JsonNode n = Json.MAPPER.readTree(text.substring(0, text.length() - "after".length()));
        assertEquals(3, n.get("id").asInt());
        assertEquals("hugetlb-2M", n.get("backing").asText());
        assertTrue(n.get("pfn").isNull(), "null components are written as null, not dropped");
        assertEquals("HUGE", n.get("flags").get(0).asText());
    }
}
