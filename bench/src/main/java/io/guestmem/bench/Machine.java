package io.guestmem.bench;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Where the numbers came from: kernel, CPU, cores, JDK, THP mode and the load at that moment. */
record Machine(String kernel, String cpu, int cores, String jdk, String thp, double load1, double load5) {

    static Machine probe() {
        String kernel = first("/proc/sys/kernel/osrelease", null).trim();
        String cpu = "unknown";
        for (String line : first("/proc/cpuinfo", "").split("\n")) {
            if (line.startsWith("model name")) {
                cpu = line.substring(line.indexOf(':') + 1).trim();
                break;
            }
        }
        String[] load = first("/proc/loadavg", "NaN NaN").trim().split("\\s+");
        return new Machine(kernel, cpu, Runtime.getRuntime().availableProcessors(),
                System.getProperty("java.vm.name") + " " + Runtime.version(),
                first("/sys/kernel/mm/transparent_hugepage/enabled", "unknown").trim(),
                Double.parseDouble(load[0]), Double.parseDouble(load[1]));
    }

    /** True when other work competes for the cores (1-minute load above half the core count). */
    boolean busy() {
        return load1 > cores * 0.5;
    }

    private static String first(String path, String orElse) {
        try {
            return Files.readString(Path.of(path));
        } catch (IOException e) {
            return orElse != null ? orElse : "unknown";
        }
    }
}
