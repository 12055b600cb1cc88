package io.guestmem.snapshot;

/**
 * What a restore did.
 *
 * @param snapshots    snapshots applied (the base and its increments)
 * @param pagesWritten pages written from DATA records
 * @param pagesZeroed  pages that held data in the target and were zeroed (recorded zeros, or absent from a full
 *                     snapshot); pages not present in the target already read zero and are not touched
 * @param bytesRead    bytes of page data read from the files
 * @param millis       wall time
 */
public record RestoreStats(int snapshots, long pagesWritten, long pagesZeroed, long bytesRead, double millis) {}
