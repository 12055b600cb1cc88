/**
 * Guest memory access for a VMM's device models: {@link io.guestmem.access.GuestMemory} (bulk, typed
 * plain, opaque, acquire/release and atomic access, channel I/O, the VMM's dirty log, the vhost-user memory
 * table), its dirty-tracked zero-copy {@link io.guestmem.access.GuestSlice}s and FFM-layout
 * {@link io.guestmem.access.GuestStruct}s, its errors ({@link io.guestmem.access.GuestMemoryException} and
 * subclasses), the per-slot {@link io.guestmem.access.DirtyBitmap} and the private-memory hook
 * {@link io.guestmem.access.PageAccessPolicy}.
 *
 * <h2>Inside</h2>
 * {@code GuestMemory} keeps the typed accessors, the read-modify-write protocol and the life cycle; the
 * package-private pieces behind it: {@code SlotTable} (the immutable slot table and the fast path's bucket
 * table, one per memslot change, retired when replaced), {@code SlotMapping} (a slot's region, view, dirty
 * log and {@code SlotHold}, kept across FLAGS_ONLY changes), {@code ChunkWalk} (the one walk of a gpa range
 * that every bulk operation uses, as vm-memory's {@code try_access}), {@code ChannelTransfer} (the channel
 * calls of one transfer and its dirty marks), {@code LayoutGate} (transfers' slot holds and pins against
 * layout changes, with a bounded wait: KVM's memslot SRCU), {@code DirtyHarvest} (collecting and merging the
 * VMM's dirty log) and {@code VhostUserTable} (the vhost-user memory table).
 *
 * <h2>For benchmarks (bench module, AccessBench)</h2>
 * Layout: {@code new GuestMemory(new Memslots())}, then per slot {@code HostRegion.thp(2 MiB)} (or
 * {@code anonymous} for 4K pages) and {@code gm.addRam(id, gpa, region)} with 1 MiB gaps between slots; touch
 * every page first ({@code gm.fill(gpa, size, (byte) 1)} or a {@code Prefault} option). Then, at random gpas:
 * <ul>
 * <li>readU64: {@code gm.readU64(gpa)} (plain), {@code gm.readU64Volatile(gpa & ~7)}, {@code gm.readU64Acquire(gpa & ~7)},
 * {@code gm.getAndAddU64(gpa & ~7, 0)}</li>
 * <li>write4k: {@code gm.write(gpa4kAligned, byte[4096] buf, 0, 4096)} (marks one dirty page per call)</li>
 * <li>gpa -&gt; slot step alone: {@code gm.slotIndexOf(gpa)}</li>
 * </ul>
 * All allocate nothing and make no syscall once compiled (AllocationTest checks it).
 */
package io.guestmem.access;
