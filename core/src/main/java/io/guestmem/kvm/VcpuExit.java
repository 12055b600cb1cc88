package io.guestmem.kvm;

import io.guestmem.kvmapi.KvmExitReason;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Fmt;
import java.util.Arrays;
import java.util.HexFormat;

/** Why KVM_RUN returned to userspace: {@code kvm_run.exit_reason} with its exit data, copied into a value. */
public sealed interface VcpuExit {

    /** KVM_EXIT_IO: {@code count} accesses of {@code size} bytes to {@code port}; {@code data} is what OUT wrote. */
    record Io(int port, int size, Direction direction, int count, byte[] data) implements VcpuExit {
        public enum Direction { IN, OUT }

        public Io {
            data = data.clone();
        }

        @Override
        public byte[] data() {
            return data.clone();
        }

        /** The first access's value, little-endian (for OUT). */
        public long value() {
            long v = 0;
            for (int i = Math.min(size, data.length) - 1; i >= 0; i--) v = (v << 8) | (data[i] & 0xff);
            return v;
        }

        @Override
        public String toString() {
            return "Io[" + direction + " port=" + Fmt.hex(port) + " size=" + size + " count=" + count
                    + " data=" + HexFormat.of().formatHex(data) + "]";
        }
    }

    /** KVM_EXIT_MMIO: an access to a gpa no writable slot backs (or a write to a read-only slot). */
    record Mmio(long gpa, int len, boolean isWrite, byte[] data) implements VcpuExit {
        public Mmio {
            data = data.clone();
        }

        @Override
        public byte[] data() {
            return data.clone();
        }

        @Override
        public String toString() {
            return "Mmio[" + (isWrite ? "write " : "read ") + Fmt.hex(gpa) + " len=" + len
                    + (isWrite ? " data=" + HexFormat.of().formatHex(data) : "") + "]";
        }
    }

    /** KVM_EXIT_HLT. */
    record Hlt() implements VcpuExit {}

    /** KVM_EXIT_SHUTDOWN: a triple fault. */
    record Shutdown() implements VcpuExit {}

    /** KVM_EXIT_FAIL_ENTRY: the hardware refused to enter the guest. */
    record FailEntry(long reason, int cpu) implements VcpuExit {}

    /** KVM_EXIT_INTERNAL_ERROR: suberror 1 is "emulation failed". */
    record InternalError(int suberror, long[] data) implements VcpuExit {
        public InternalError {
            data = data.clone();
        }

        @Override
        public long[] data() {
            return data.clone();
        }

        @Override
        public String toString() {
            return "InternalError[suberror=" + suberror + (suberror == KvmExitReason.INTERNAL_ERROR_EMULATION
                    ? " (emulation failed)" : "") + " data=" + Arrays.toString(data) + "]";
        }
    }

    /**
     * KVM_EXIT_MEMORY_FAULT: KVM could not map {@code [gpa, gpa+size)}; KVM_RUN failed with {@code errno}
     * (EFAULT, or EHWPOISON for poisoned memory).
     */
    record MemoryFault(long gpa, long size, long flags, Errno errno) implements VcpuExit {
        public boolean isPrivate() {
            return (flags & KvmExitReason.MEMORY_EXIT_FLAG_PRIVATE) != 0;
        }

        @Override
        public String toString() {
            return "MemoryFault[" + errno + " gpa=" + Fmt.hex(gpa) + " size=" + Fmt.size(size) + " flags=" + Fmt.hex(flags) + "]";
        }
    }

    /** KVM_EXIT_SYSTEM_EVENT (shutdown/reset/crash requested through the platform). */
    record SystemEvent(int type, long[] data) implements VcpuExit {
        public SystemEvent {
            data = data.clone();
        }

        @Override
        public long[] data() {
            return data.clone();
        }
    }

    /** KVM_RUN was interrupted by a signal (or immediate_exit) before the guest exited. */
    record Interrupted() implements VcpuExit {}

    /** Any exit this library does not decode, with its number and name. */
    record Other(int reason) implements VcpuExit {
        @Override
        public String toString() {
            return "Other[" + KvmExitReason.nameOf(reason) + "]";
        }
    }
}
