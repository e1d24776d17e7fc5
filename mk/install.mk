# install.mk - man pages, `make install` / `make uninstall`, pkg-config.
#
#   make man                        man pages from man/*.scd into $(BUILD)/man (also part of `all`)
#   make install                    install into PREFIX (default /usr/local)
#   make install DESTDIR=/tmp/stage PREFIX=/usr
#   make uninstall                  remove exactly what install installed (same variables)
#
# Directories follow the GNU names; each can be overridden on the command line:
# PREFIX, EXEC_PREFIX, BINDIR, LIBDIR, INCLUDEDIR, DATADIR, MANDIR, PKGCONFIGDIR,
# BASHCOMPDIR. DESTDIR is prepended to all of them when copying, never written
# into the installed files (evmon.pc names the final paths), as packagers expect.
#
# Installed: evmon, evmon-init (the small dynamic build of `evmon init`, mk/init.mk), libevmon.so.MAJOR.MINOR with its
# SONAME link libevmon.so.MAJOR and the dev link libevmon.so, libevmon.a, evmon.h,
# evmon.pc, the man pages, and the bash completion.

PREFIX ?= /usr/local
EXEC_PREFIX ?= $(PREFIX)
BINDIR ?= $(EXEC_PREFIX)/bin
LIBDIR ?= $(EXEC_PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
DESTDIR ?=
INSTALL ?= install

SONAME := libevmon.so.$(MAJOR)
MAN_SRC := $(sort $(wildcard man/*.scd))
MAN_PAGES := $(MAN_SRC:man/%.scd=$(BUILD)/man/%)
PC_FILE := $(BUILD)/evmon.pc

.PHONY: man install uninstall

man: $(MAN_PAGES)
all: $(MAN_PAGES)

# @VERSION@ in a page becomes the version from VERSION, so pages never disagree with --version.
$(BUILD)/man/%: man/%.scd VERSION | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	sed 's/@VERSION@/$(VERSION)/g' $< | scdoc > $@.tmp
	@mv $@.tmp $@

# A directory under PREFIX is written as ${prefix}/..., so pkgconf --define-prefix can relocate it.
pc_rel = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))

# Regenerated on every install: the paths in it depend on the command line.
$(PC_FILE): evmon.pc.in VERSION FORCE_PC
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(call pc_rel,$(LIBDIR))|g' \
	    -e 's|@INCLUDEDIR@|$(call pc_rel,$(INCLUDEDIR))|g' -e 's|@VERSION@|$(VERSION)|g' $< > $@
.PHONY: FORCE_PC
FORCE_PC:

D_BIN := $(DESTDIR)$(BINDIR)
D_LIB := $(DESTDIR)$(LIBDIR)
D_INC := $(DESTDIR)$(INCLUDEDIR)
D_PC := $(DESTDIR)$(PKGCONFIGDIR)
D_MAN := $(DESTDIR)$(MANDIR)
D_COMP := $(DESTDIR)$(BASHCOMPDIR)

# The section of a page is the last suffix of its name: evmon.ini.5 -> 5.
man_section = $(lastword $(subst ., ,$(notdir $(1))))

install: $(EVMON) $(INIT_DYNAMIC) $(SHARED_LIB) $(STATIC_LIB) $(MAN_PAGES) $(PC_FILE) include/evmon.h completion/evmon
	$(INSTALL) -d $(D_BIN) $(D_LIB) $(D_INC) $(D_PC) $(D_COMP)
	$(INSTALL) -m 0755 $(EVMON) $(D_BIN)/evmon
	$(INSTALL) -m 0755 $(INIT_DYNAMIC) $(D_BIN)/evmon-init
	$(INSTALL) -m 0755 $(SHARED_LIB) $(D_LIB)/$(notdir $(SHARED_LIB))
	ln -sf $(notdir $(SHARED_LIB)) $(D_LIB)/$(SONAME)
	ln -sf $(SONAME) $(D_LIB)/libevmon.so
	$(INSTALL) -m 0644 $(STATIC_LIB) $(D_LIB)/libevmon.a
	$(INSTALL) -m 0644 include/evmon.h $(D_INC)/evmon.h
	$(INSTALL) -m 0644 $(PC_FILE) $(D_PC)/evmon.pc
	$(INSTALL) -m 0644 completion/evmon $(D_COMP)/evmon
	ln -sf evmon $(D_COMP)/evmon-init
	$(foreach p,$(MAN_PAGES),$(INSTALL) -d $(D_MAN)/man$(call man_section,$(p)) && \
		$(INSTALL) -m 0644 $(p) $(D_MAN)/man$(call man_section,$(p))/$(notdir $(p));)
	@# the dynamic linker's cache must learn about a new library in a system directory
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then \
		echo ldconfig; ldconfig; fi

uninstall:
	rm -f $(D_BIN)/evmon $(D_BIN)/evmon-init
	rm -f $(D_LIB)/$(notdir $(SHARED_LIB)) $(D_LIB)/$(SONAME) $(D_LIB)/libevmon.so $(D_LIB)/libevmon.a
	rm -f $(D_INC)/evmon.h $(D_PC)/evmon.pc $(D_COMP)/evmon $(D_COMP)/evmon-init
	rm -f $(foreach p,$(MAN_PAGES),$(D_MAN)/man$(call man_section,$(p))/$(notdir $(p)))
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then \
		echo ldconfig; ldconfig; fi
