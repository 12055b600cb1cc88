/**
 * Snapshots of guest memory: {@link io.guestmem.snapshot.SnapshotWriter} saves a memory's RAM slots (full, or
 * an increment of the pages a dirty tracker saw written), {@link io.guestmem.snapshot.Snapshot} opens and
 * checks a file, {@link io.guestmem.snapshot.SnapshotRestore} brings the memory back.
 *
 * <h2>File format, version 1 (little-endian)</h2>
 * <pre>
 * header, 64 bytes
 *    0  8  magic "GMSNAPv1"
 *    8  4  version (1)
 *   12  4  flags: bit 0 = incremental
 *   16  4  guest page size in bytes
 *   20  4  slot count N
 *   24  8  snapshot id (random, never 0)
 *   32  8  base snapshot id (the snapshot this one is an increment on; 0 for a full snapshot)
 *   40  8  created, milliseconds since the epoch
 *   48  4  CRC32C of the manifest
 *   52  8  reserved (0)
 *   60  4  CRC32C of bytes 0..59
 * manifest, N entries of 80 bytes, in gpa order
 *    0  4  memslot id             4  4  address space
 *    8  8  gpa                   16  8  size in bytes
 *   24  8  host page size of the backing
 *   32  8  DATA pages of the slot in this file
 *   40  8  ZERO pages of the slot in this file
 *   48  4  memslot flags         52  4  backing label length L (at most 24)
 *   56 24  backing label (ASCII, e.g. "hugetlb-2M", zero padded)
 * records, each a 32-byte header, a DATA header followed by its pages
 *    0  4  kind: 1 DATA, 2 ZERO, 0x21444E45 END
 *    4  4  slot index in the manifest (END: 0xFFFFFFFF)
 *    8  8  first page, relative to the slot (END: the number of records before it)
 *   16  4  pages (a DATA record holds at most 64 KiB of pages)
 *   20  4  CRC32C of the DATA record's pages (0 otherwise)
 *   24  4  reserved (0)
 *   28  4  CRC32C of bytes 0..27
 * the END record is the file's last 32 bytes
 * </pre>
 * A page in no record of a full snapshot was never touched (neither present nor swapped out when it was taken)
 * and reads zero; a ZERO record's pages were present and all zero. An increment's records are the pages written
 * since its base; its ZERO records zero pages that held data before.
 *
 * <h2>Page-fault handler in another process: the handoff protocol, version 1 (little-endian)</h2>
 * {@link io.guestmem.snapshot.RemoteLazyRestore} (the VMM) and {@link io.guestmem.snapshot.RemoteRestoreHandler}
 * talk over a unix stream socket. The VMM sends one message; its descriptors ride with its first byte
 * (SCM_RIGHTS): descriptor 0 is the userfaultfd (past UFFDIO_API, the ranges registered MISSING, and MINOR where a
 * file backs them), then one per file-backed range.
 * <pre>
 * header, 32 bytes
 *    0  8  magic "GMUFFDv1"
 *    8  4  range count N (1 to 252: the descriptors of one message are at most 253)
 *   12  4  reserved (0)
 *   16  8  guest page size
 *   24  8  the userfaultfd's features (what UFFDIO_API granted: POISON tells the handler it may poison)
 * N ranges of 64 bytes, in the snapshot manifest's order
 *    0  4  memslot id             4  4  descriptor index (-1: private memory, served by UFFDIO_COPY)
 *    8  8  gpa                   16  8  size in bytes
 *   24  8  address of the range in the VMM
 *   32  8  file offset of that address (file-backed ranges)
 *   40  8  host page size        48  4  flags: bit 0 = hugetlb
 *   52  4  address space         56  8  reserved (0)
 * then 4 bytes: CRC32C of everything before
 * </pre>
 * The handler answers with records of a 16-byte header ({@code 0 4 kind, 4 4 payload length (at most 4096),
 * 8 8 value}) and the payload: READY (1, value = blocks with data) once it serves; REFUSED (2, text: why) when
 * the layout is not the snapshot's (slots, places, sizes, host page sizes, a file for exactly the memfd backings)
 * or the message is malformed; POISONED (3, value = blocks poisoned, text: the last failure); COMPLETE (4, value =
 * faults served, payload = the handler's {@link io.guestmem.snapshot.LazyRestoreStats} as ten 8-byte values) after
 * every data block arrived and the ranges were unregistered. The VMM closing its end stops the handler; the
 * handler's end before COMPLETE makes the VMM poison every page not yet in place.
 */
package io.guestmem.snapshot;
