/**
 * Live migration of guest memory between two processes over a stream socket: {@link
 * io.guestmem.migration.MigrationSource} sends a running VM's RAM slots in pre-copy rounds taken from the dirty
 * trackers, then, with the guest paused, the last dirty pages and a checksum of every page;
 * {@link io.guestmem.migration.MigrationDestination} builds fresh regions of the same backings, fills them, and
 * answers how many pages' checksums agree. As an option, post-copy: the switch comes after pre-copy with the
 * last dirty pages still at the source, and the destination's guest runs while it pulls them.
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
 *    7 POSTCOPY   a = the slot's pages; body: a bitmap of the pages the destination must not take from pre-copy
 *                 (bit i of little-endian 64-bit word i/64 = page i); one per slot, after the VERIFYs (post-copy)
 *    8 SWITCH     a = round, b = pages marked in the POSTCOPY bitmaps; the destination's guest may run
 * destination to source
 *    9 REQUEST    after SWITCH: a = first page, b = pages; answered by DATA and ZERO records covering exactly
 *                 those pages, in order; one request in flight at a time
 *    6 RESULT     after DONE, or after SWITCH once every requested page arrived: a = pages whose checksum
 *                 agreed, b = pages checked
 * </pre>
 * Without post-copy a migration is: header, rounds of DATA/ZERO each ended by ROUND_END, the last round with
 * the guest paused, VERIFY per slot, DONE, RESULT. With post-copy ({@link
 * io.guestmem.migration.MigrationSource.Options#postCopy}): header, the pre-copy rounds, then with the guest
 * paused VERIFY per slot (the checksums at the switch), POSTCOPY per slot, SWITCH; then REQUESTs and their
 * answers until RESULT. The destination checks the pages it kept at the switch and each page that arrives
 * against the VERIFY checksums ({@link io.guestmem.migration.PostCopy}).
 *
 * <h2>Post-copy compared</h2>
 * QEMU's post-copy (since 2.5) also switches after some pre-copy, pulls the rest through userfaultfd and streams
 * the remaining pages in the background; page requests travel on the stream's return path (and, since QEMU
 * 7.1, urgent pages may take a separate "preempt" channel), and a failed post-copy
 * leaves the guest paused on both sides ("postcopy-paused") until it can be recovered. Here the source keeps
 * every page and its paused guest: a lost destination leaves the caller free to resume the source, a lost
 * source poisons the pages that did not arrive, so the destination guest's access to one fails (a memory error)
 * instead of hanging.
 * A peer that closes the stream, a record head or body that fails its checksum, or a kind out of order ends
 * the migration: the destination releases everything it built, the source's memory is untouched (it only
 * read it) and the guest it paused is the caller's to resume.
 */
package io.guestmem.migration;
