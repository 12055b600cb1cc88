package io.guestmem.sys;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/** Affinity against the kernel's own view: {@code Cpus_allowed_list} and the CPU field of {@code stat}. */
class SchedTest {

    /** Expands a list like {@code 0-3,6} into CPU numbers. */
    static List<Integer> parseList(String list) {
        List<Integer> out = new ArrayList<>();
        for (String part : list.trim().split(",")) {
            String[] ab = part.split("-");
            int a = Integer.parseInt(ab[0]), b = ab.length > 1 ? Integer.parseInt(ab[1]) : a;
            for (int c = a; c <= b; c++) out.add(c);
        }
        return out;
    }

    static String status(String field) throws Exception {
        for (String line : Files.readAllLines(Path.of("/proc/thread-self/status"))) {
            if (line.startsWith(field + ":")) return line.substring(field.length() + 1).trim();
        }
        throw new AssertionError("no " + field + " in /proc/thread-self/status");
    }

    /** The CPU this thread last ran on: field 39 of /proc/thread-self/stat (after the parenthesised name). */
    static int lastCpu() throws Exception {
        String stat = Files.readString(Path.of("/proc/thread-self/stat"));
        String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
        return Integer.parseInt(f[39 - 3]);
    }

    @Test
    void allowedCpusAreTheKernelsList() throws Exception {
        int[] cpus = Sched.allowedCpus();
        assertEquals(parseList(status("Cpus_allowed_list")), java.util.Arrays.stream(cpus).boxed().toList());
        assertTrue(Runtime.getRuntime().availableProcessors() <= cpus.length);
    }

    @Test
    void aPinnedThreadRunsOnlyOnItsCpu() throws Exception {
        int[] cpus = Sched.allowedCpus();
        int cpu = cpus[cpus.length - 1];
        AtomicReference<Object> seen = new AtomicReference<>();
        Thread t = Thread.ofPlatform().start(() -> {
            try {
                Sched.pinCurrentThread(cpu);
                long x = 0;
                for (int i = 0; i < 5_000_000; i++) x += i; // run a little on the new CPU
                seen.set(new Object[] {Sched.allowedCpus(), status("Cpus_allowed_list"), lastCpu(), x});
            } catch (Throwable e) {
                seen.set(e);
            }
        });
        t.join();
        if (seen.get() instanceof Throwable e) throw new AssertionError(e);
        Object[] r = (Object[]) seen.get();
        assertArrayEquals(new int[] {cpu}, (int[]) r[0]);
        assertEquals(List.of(cpu), parseList((String) r[1]));
        assertEquals(cpu, r[2], "the kernel ran the pinned thread on its CPU");
        // the caller's own affinity is untouched (pid 0 means the calling thread only)
        assertArrayEquals(cpus, Sched.allowedCpus());
    }

    @Test
    void aCpuThatDoesNotExistIsEinval() throws Exception {
        AtomicReference<Throwable> thrown = new AtomicReference<>();
        Thread t = Thread.ofPlatform().start(() -> {
            try {
                Sched.pinCurrentThread(4000);
            } catch (Throwable e) {
                thrown.set(e);
            }
        });
        t.join();
        SyscallException e = assertInstanceOf(SyscallException.class, thrown.get());
        assertTrue(e.getMessage().contains("EINVAL") && e.getMessage().contains("sched_setaffinity"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> Sched.pinCurrentThread(-1));
    }

    @Test
    void masksDecodeBitByBit() {
        assertArrayEquals(new int[] {0, 3, 64, 127}, Sched.cpusOf(new long[] {0b1001, 1L | (1L << 63)}));
        assertArrayEquals(new int[0], Sched.cpusOf(new long[2]));
    }
}
