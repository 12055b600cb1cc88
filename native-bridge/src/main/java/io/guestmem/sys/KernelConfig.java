package io.guestmem.sys;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.zip.GZIPInputStream;

/**
 * The running kernel's build configuration, where the machine has a copy: {@code /proc/config.gz}
 * (CONFIG_IKCONFIG_PROC) or {@code /boot/config-<release>} (Debian and most distributions install it). A
 * machine without either gives an empty configuration, and every lookup answers its default: callers use it
 * only to refine a value they can read otherwise.
 */
public final class KernelConfig {
    private static volatile KernelConfig running;

    private final Map<String, String> values;
    private final String source;

    private KernelConfig(Map<String, String> values, String source) {
        this.values = values;
        this.source = source;
    }

    /** The configuration of the running kernel, read once. */
    public static KernelConfig running() {
        KernelConfig c = running;
        if (c == null) running = c = read(System.getProperty("os.version"));
        return c;
    }

    static KernelConfig read(String release) {
        Path proc = Path.of("/proc/config.gz"), boot = Path.of("/boot/config-" + release);
        try {
            if (Files.isReadable(proc)) {
                try (InputStream in = new GZIPInputStream(Files.newInputStream(proc))) {
                    return new KernelConfig(parse(in), proc.toString());
                }
            }
            if (Files.isReadable(boot)) {
                try (InputStream in = Files.newInputStream(boot)) {
                    return new KernelConfig(parse(in), boot.toString());
                }
            }
        } catch (IOException e) {
            // unreadable: the same as absent, lookups answer their defaults
        }
        return new KernelConfig(Map.of(), null);
    }

    static Map<String, String> parse(InputStream in) throws IOException {
        Map<String, String> m = new HashMap<>();
        BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8));
        for (String line; (line = r.readLine()) != null; ) {
            int eq = line.indexOf('=');
            if (line.startsWith("CONFIG_") && eq > 0) m.put(line.substring(0, eq), line.substring(eq + 1));
        }
        return m;
    }

    /** The integer value of {@code name} ({@code CONFIG_ARM64_VA_BITS=48}), or {@code dflt}. */
    public int intValue(String name, int dflt) {
        String v = values.get(name);
        if (v == null) return dflt;
        try {
            return Integer.parseInt(v.trim());
        } catch (NumberFormatException e) {
            return dflt;
        }
    }

    /** Where the configuration was read from, or null when the machine has none. */
    public String source() {
        return source;
    }
}
