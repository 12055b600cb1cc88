package io.guestmem.kvmapi;

import static io.guestmem.kvmapi.KvmLayouts.KVM_RUN;
import static io.guestmem.kvmapi.KvmLayouts.offset;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * A view of a vCPU's mmap'd {@code struct kvm_run}: read the exit after KVM_RUN, answer port-IN and MMIO
 * reads before the next one. Reads copy into Java values, so callers outside the bridge never hold a
 * segment that dies with the vCPU. Every access checks that the vCPU is still open.
 */
public final class KvmRun {
    private static final long IMMEDIATE_EXIT = offset(KVM_RUN, "immediate_exit");
    private static final long EXIT_REASON = offset(KVM_RUN, "exit_reason");
    private static final long HW_REASON = offset(KVM_RUN, "exit", "hw", "hardware_exit_reason");
    private static final long FE_REASON = offset(KVM_RUN, "exit", "fail_entry", "hardware_entry_failure_reason");
    private static final long FE_CPU = offset(KVM_RUN, "exit", "fail_entry", "cpu");
    private static final long IO_DIR = offset(KVM_RUN, "exit", "io", "direction");
    private static final long IO_SIZE = offset(KVM_RUN, "exit", "io", "size");
    private static final long IO_PORT = offset(KVM_RUN, "exit", "io", "port");
    private static final long IO_COUNT = offset(KVM_RUN, "exit", "io", "count");
    private static final long IO_DATA_OFFSET = offset(KVM_RUN, "exit", "io", "data_offset");
    private static final long MMIO_ADDR = offset(KVM_RUN, "exit", "mmio", "phys_addr");
    private static final long MMIO_DATA = offset(KVM_RUN, "exit", "mmio", "data");
    private static final long MMIO_LEN = offset(KVM_RUN, "exit", "mmio", "len");
    private static final long MMIO_IS_WRITE = offset(KVM_RUN, "exit", "mmio", "is_write");
    private static final long INT_SUBERROR = offset(KVM_RUN, "exit", "internal", "suberror");
    private static final long INT_NDATA = offset(KVM_RUN, "exit", "internal", "ndata");
    private static final long INT_DATA = offset(KVM_RUN, "exit", "internal", "data");
    private static final long SE_TYPE = offset(KVM_RUN, "exit", "system_event", "type");
    private static final long SE_NDATA = offset(KVM_RUN, "exit", "system_event", "ndata");
    private static final long SE_DATA = offset(KVM_RUN, "exit", "system_event", "data");
    private static final long MF_FLAGS = offset(KVM_RUN, "exit", "memory_fault", "flags");
    private static final long MF_GPA = offset(KVM_RUN, "exit", "memory_fault", "gpa");
    private static final long MF_SIZE = offset(KVM_RUN, "exit", "memory_fault", "size");

    private final MemorySegment seg;
    private final VcpuFd owner;

    KvmRun(MemorySegment seg, VcpuFd owner) {
        this.seg = seg;
        this.owner = owner;
    }

    private MemorySegment s() {
        owner.checkOpen("kvm_run");
        return seg;
    }

    public int exitReason() {
        return s().get(ValueLayout.JAVA_INT, EXIT_REASON);
    }

    /** {@code immediate_exit}: when set, the next KVM_RUN returns at once with EINTR. */
    public void setImmediateExit(boolean on) {
        s().set(ValueLayout.JAVA_BYTE, IMMEDIATE_EXIT, (byte) (on ? 1 : 0));
    }

    public long hardwareExitReason() {
        return s().get(ValueLayout.JAVA_LONG, HW_REASON);
    }

    public long failEntryReason() {
        return s().get(ValueLayout.JAVA_LONG, FE_REASON);
    }

    public int failEntryCpu() {
        return s().get(ValueLayout.JAVA_INT, FE_CPU);
    }

    public int ioDirection() {
        return Byte.toUnsignedInt(s().get(ValueLayout.JAVA_BYTE, IO_DIR));
    }

    public int ioSize() {
        return Byte.toUnsignedInt(s().get(ValueLayout.JAVA_BYTE, IO_SIZE));
    }

    public int ioPort() {
        return Short.toUnsignedInt(s().get(ValueLayout.JAVA_SHORT, IO_PORT));
    }

    public int ioCount() {
        return s().get(ValueLayout.JAVA_INT, IO_COUNT);
    }

    public long ioDataOffset() {
        return s().get(ValueLayout.JAVA_LONG, IO_DATA_OFFSET);
    }

    /** The {@code size * count} bytes of an IO exit's data (what the guest wrote for OUT). */
    public byte[] ioData() {
        long len = (long) ioSize() * ioCount();
        return s().asSlice(checkedDataOffset(len), len).toArray(ValueLayout.JAVA_BYTE);
    }

    /** Supplies the data of an IN exit before the next KVM_RUN. */
    public void setIoData(byte[] data) {
        long len = (long) ioSize() * ioCount();
        if (data.length != len) throw new IllegalArgumentException("IN exit wants " + len + " bytes, got " + data.length);
        MemorySegment.copy(data, 0, s(), ValueLayout.JAVA_BYTE, checkedDataOffset(len), data.length);
    }

    private long checkedDataOffset(long len) {
        long off = ioDataOffset();
        if (off < 0 || off + len > seg.byteSize())
            throw new IllegalStateException("kvm_run io.data_offset " + off + " + " + len + " outside the mapping");
        return off;
    }

    public long mmioPhysAddr() {
        return s().get(ValueLayout.JAVA_LONG, MMIO_ADDR);
    }

    public int mmioLen() {
        return s().get(ValueLayout.JAVA_INT, MMIO_LEN);
    }

    public boolean mmioIsWrite() {
        return s().get(ValueLayout.JAVA_BYTE, MMIO_IS_WRITE) != 0;
    }

    /** The first {@code len} bytes of {@code mmio.data} (what the guest wrote, for a write). */
    public byte[] mmioData() {
        int len = Math.min(8, Math.max(0, mmioLen()));
        return s().asSlice(MMIO_DATA, len).toArray(ValueLayout.JAVA_BYTE);
    }

    /** Supplies the value of an MMIO read before the next KVM_RUN. */
    public void setMmioData(byte[] data) {
        if (data.length > 8) throw new IllegalArgumentException("mmio data is at most 8 bytes");
        MemorySegment.copy(data, 0, s(), ValueLayout.JAVA_BYTE, MMIO_DATA, data.length);
    }

    public int internalSuberror() {
        return s().get(ValueLayout.JAVA_INT, INT_SUBERROR);
    }

    /** {@code internal.data[0..ndata)} (KVM_CAP_INTERNAL_ERROR_DATA). */
    public long[] internalData() {
        int n = Math.min(16, Math.max(0, s().get(ValueLayout.JAVA_INT, INT_NDATA)));
        return s().asSlice(INT_DATA, n * 8L).toArray(ValueLayout.JAVA_LONG);
    }

    public int systemEventType() {
        return s().get(ValueLayout.JAVA_INT, SE_TYPE);
    }

    public long[] systemEventData() {
        int n = Math.min(16, Math.max(0, s().get(ValueLayout.JAVA_INT, SE_NDATA)));
        return s().asSlice(SE_DATA, n * 8L).toArray(ValueLayout.JAVA_LONG);
    }

    public long memoryFaultFlags() {
        return s().get(ValueLayout.JAVA_LONG, MF_FLAGS);
    }

    public long memoryFaultGpa() {
        return s().get(ValueLayout.JAVA_LONG, MF_GPA);
    }

    public long memoryFaultSize() {
        return s().get(ValueLayout.JAVA_LONG, MF_SIZE);
    }
}
