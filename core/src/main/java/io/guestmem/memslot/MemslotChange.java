package io.guestmem.memslot;

/**
 * A change about to be published, in KVM's terms ({@code enum kvm_mr_change}). {@code old} is null for
 * CREATE, {@code updated} is null for DELETE.
 */
public record MemslotChange(Kind kind, Memslot old, Memslot updated) {
    public enum Kind { CREATE, DELETE, MOVE, FLAGS_ONLY }
}
