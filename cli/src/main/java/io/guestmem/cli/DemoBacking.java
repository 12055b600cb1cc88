package io.guestmem.cli;

import io.guestmem.host.Backing;
import io.guestmem.host.HugePageSize;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import picocli.CommandLine;

/**
 * A backing the demo can map a slot over: a {@link Backing} (the one definition of how guest memory is
 * created) and, for hugetlb, the page size, since {@link Backing#HUGETLB_OTHER} stands for every size but 2M
 * and 1G. The name is the backing's label, {@code hugetlb-<size>} for hugetlb ({@code hugetlb-64K} ...).
 *
 * @param kind          how the region is created
 * @param hugePageBytes the hugetlb page size, 0 for other backings
 */
record DemoBacking(Backing kind, long hugePageBytes) {

    /** What {@code --backings} accepts, in the order the help lists them. */
    static final List<DemoBacking> KNOWN = List.of(of(Backing.ANON), of(Backing.THP), hugetlb(64L << 10),
            hugetlb(2L << 20), hugetlb(32L << 20), hugetlb(1L << 30), of(Backing.MEMFD), of(Backing.GUEST_MEMFD),
            of(Backing.PFNMAP), of(Backing.SECRET));

    DemoBacking {
        if (kind.isHugetlb() != (hugePageBytes > 0))
            throw new IllegalArgumentException(kind + " with a huge page size of " + hugePageBytes);
    }

    static DemoBacking of(Backing kind) {
        return new DemoBacking(kind, 0);
    }

    static DemoBacking hugetlb(long pageBytes) {
        return new DemoBacking(Backing.hugetlb(new HugePageSize(pageBytes)), pageBytes);
    }

    /** The name on the command line, in the table and in the JSON. */
    String label() {
        return hugePageBytes > 0 ? "hugetlb-" + new HugePageSize(hugePageBytes).label() : kind.label();
    }

    /** The known names, comma-separated. */
    static String names() {
        return String.join(", ", KNOWN.stream().map(DemoBacking::label).toList());
    }

    /** The known backing named {@code name}; a usage error naming the known ones otherwise. */
    static DemoBacking parse(String name) {
        for (DemoBacking b : KNOWN) if (b.label().equals(name)) return b;
        throw new CommandLine.TypeConversionException("unknown backing '" + name + "' (known: " + names() + ")");
    }

    @Override
    public String toString() {
        return label();
    }

    /** picocli's converter: a bad name is a parameter error, so exit 2 with the known names. */
    static final class Converter implements CommandLine.ITypeConverter<DemoBacking> {
        @Override
        public DemoBacking convert(String value) {
            return parse(value);
        }
    }

    /** picocli's completion candidates (also what {@code ${COMPLETION-CANDIDATES}} prints in the help). */
    static final class Names implements Iterable<String> {
        @Override
        public Iterator<String> iterator() {
            List<String> out = new ArrayList<>();
            for (DemoBacking b : KNOWN) out.add(b.label());
            return out.iterator();
        }
    }
}
