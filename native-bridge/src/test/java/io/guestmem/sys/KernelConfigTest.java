package io.guestmem.sys;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;

class KernelConfigTest {

    @Test
    void parsesSetOptionsAndIgnoresTheRest() throws Exception {
        String text = "#\n# Automatically generated\nCONFIG_ARM64_VA_BITS_48=y\nCONFIG_ARM64_VA_BITS=48\n"
                + "# CONFIG_ARM64_VA_BITS_52 is not set\nCONFIG_LOCALVERSION=\"\"\n";
        Map<String, String> m = KernelConfig.parse(new ByteArrayInputStream(text.getBytes(StandardCharsets.UTF_8)));
        assertEquals(Map.of("CONFIG_ARM64_VA_BITS_48", "y", "CONFIG_ARM64_VA_BITS", "48", "CONFIG_LOCALVERSION", "\"\""), m);
    }

    @Test
    void theRunningKernelsConfigIsReadWhereTheMachineHasOne() {
        KernelConfig c = KernelConfig.running();
        boolean has = Files.isReadable(Path.of("/proc/config.gz"))
                || Files.isReadable(Path.of("/boot/config-" + System.getProperty("os.version")));
        System.out.println("kernel config: " + (c.source() == null ? "none on this machine" : c.source()));
        if (!has) {
            assertEquals(null, c.source());
            return;
        }
        assertNotNull(c.source());
        // every 64-bit kernel this library runs on has CONFIG_PGTABLE_LEVELS (3 to 5)
        int levels = c.intValue("CONFIG_PGTABLE_LEVELS", 0);
        assertEquals(true, levels >= 3 && levels <= 5, "CONFIG_PGTABLE_LEVELS=" + levels);
        assertEquals(-1, c.intValue("CONFIG_NO_SUCH_OPTION_EVER", -1));
        if (!Arch.CURRENT.isX86()) {
            int va = c.intValue("CONFIG_ARM64_VA_BITS", 0);
            System.out.println("CONFIG_ARM64_VA_BITS=" + va);
            assertEquals(true, va >= 36 && va <= 52, "CONFIG_ARM64_VA_BITS=" + va);
        }
    }
}
