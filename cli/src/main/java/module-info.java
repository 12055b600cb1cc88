/**
 * The {@code guestmem} command. It runs on the module path ({@code ./guestmem} starts it with
 * {@code -m io.guestmem.cli}); picocli sets the commands' option fields and Jackson reads the report records
 * by reflection, so the package is open to those two, and to nothing else.
 */
module io.guestmem.cli {
    requires io.guestmem.core;
    requires io.guestmem.vhost;
    requires info.picocli;
    requires com.fasterxml.jackson.databind;
    requires me.tongfei.progressbar;

    opens io.guestmem.cli to info.picocli, com.fasterxml.jackson.databind;
}
