package io.guestmem.snapshot;

import java.nio.file.Path;

/**
 * What writing a snapshot did.
 *
 * @param file           the snapshot, under its final name
 * @param manifest       its header and slots (with the per-slot page counts)
 * @param pagesSaved     pages written as data
 * @param zeroPages      pages found present but all zero: recorded, not written
 * @param untouchedPages pages of the slots never touched (neither present nor swapped): not in the file
 * @param bytesWritten   the file's size
 * @param millis         wall time of the write, fsync and rename included
 */
public record SnapshotInfo(Path file, SnapshotManifest manifest, long pagesSaved, long zeroPages, long untouchedPages,
                           long bytesWritten, double millis) {}
