/**
 * Live migration of guest memory between two processes over a stream socket: {@link
 * io.guestmem.migration.MigrationSource} sends a running VM's RAM slots in pre-copy rounds taken from the dirty
 * trackers, then, with the guest paused, the last dirty pages and a checksum of every page;
 * {@link io.guestmem.migration.MigrationDestination} builds fresh regions of the same backings, fills them, and
 * answers how many pages' checksums agree.
 *
 * <h2>Wire format, version 1 (little-endian)</h2>
 * <pre>
 * source to destination
 * header
 *    0  8  magic "GMMIGv1\0"
 *    8  4  guest page size in bytes
 *   12  4  slot count N
 *   16  N entries of 64 bytes, in gpa order:
 *          0 4 memslot id   4 4 address space   8 8 gpa   16 8 size in bytes   24 8 host page size
 *         32 4 memslot flags   36 4 backing label length L (at most 24)   40 24 backing label (ASCII, zero padded)
 *   16 + 64N  4  CRC32C of every header byte before it
 * records, each a 32-byte head, some followed by a body
 *    0  4  kind        4  4  slot index in the header (0xFFFFFFFF where none)
 *    8  8  a           16 8  b
 *   24  4  CRC32C of the body (0 without one)
 *   28  4  CRC32C of bytes 0..27
 *   kinds:
 *    1 DATA       a = first page (slot-relative), b = pages (at most 64 KiB of them); body: the pages
 *    2 ZERO       a = first page, b = pages: all zero now (sent in rounds after the first, where a page may
 *                 have held data before)
 *    3 ROUND_END  a = round (0 the full round, the last one after the guest paused), b = pages sent in it
 *    4 VERIFY     a = the slot's pages; body: a CRC32C of each page, in order (4 bytes each); one per slot,
 *                 after the last round
 *    5 DONE       nothing follows
 * destination to source, after DONE
 *    6 RESULT     a = pages whose checksum agreed, b = pages checked
 * </pre>
 * A peer that closes the stream, a record head or body that fails its checksum, or a kind out of order ends
 * the migration: the destination releases everything it built, the source's memory is untouched (it only
 * read it) and the guest it paused is the caller's to resume.
 */
package io.guestmem.migration;
