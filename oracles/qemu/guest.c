/*
 * The QEMU oracle guest: runs mmcheck MMU scenarios on QEMU's x86 page walker.
 *
 * Input: the first multiboot module, a list of 32-byte commands (four
 * little-endian 64-bit words: opcode and three operands) after a 32-byte
 * header.  Output: one text line per result on the debug console (port 0xe9),
 * then "DONE"; the guest leaves through isa-debug-exit (port 0xf4).
 *
 * Scenario memory is guest-physical memory [0, size) itself: page-table
 * entries hold absolute physical addresses, so each frame sits at its own
 * address.  The guest's code and tables live at 64 MiB and above.  The
 * legacy hole 0xa0000-0xfffff is not RAM and is left alone (the Python
 * driver refuses scenarios that use it).
 *
 * An access runs under the scenario's CR3 with the guest's own mappings
 * reachable through top-level slot 511, patched in for the access and
 * restored after it.  CR4.PGE stays 0, so each MOV to CR3 empties the TLB
 * (SDM Vol. 3A 4.10.4.1) and every access walks the tables in memory.
 * CR4.PCIDE stays 0 as well: QEMU's TCG has no PCID (CPUID.01H:ECX bit 17
 * is clear, so setting PCIDE would #GP), and the walk does not depend on it.
 */

typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned char u8;

#define PHYSMAP 0xffffff8000000000UL
#define KVMA 0xffffffff80000000UL
#define USER_VA 0xffffffff40000000UL
#define NONCANON 0x8000000000000000UL
#define LEGACY_HOLE_START 0xa0000UL
#define LEGACY_HOLE_END 0x100000UL
#define MAX_TRACKED 65536

#define MAGIC 0x3130514b48434d4dUL /* "MMCHKQ01", little-endian */

enum { CMD_BEGIN = 1, CMD_WRITE = 2, CMD_READ = 3, CMD_ACCESS = 4, CMD_END = 5 };
enum { KIND_READ = 0, KIND_WRITE = 1, KIND_FETCH = 2 };
#define F_USER (1UL << 2)
#define F_WP (1UL << 3)
#define F_SMEP (1UL << 4)
#define F_SMAP (1UL << 5)
#define F_AC (1UL << 6)
#define F_NXE (1UL << 7)

extern u8 pml4_boot[], pml5_boot[], guest_pml4[], guest_pdpt[];
extern u8 gdt_tss[], gdt_desc64[], ist_top[], kstack_top[];
extern u64 exc_table[32];
extern u64 exc_vector, exc_error, exc_rip, exc_cr2;
extern u8 sup_read[], sup_read_done[], sup_write[], sup_write_done[], sup_poke[], sup_poke_done[];
extern u8 user_page[], user_read[], user_read_done[], user_write[], user_write_done[], user_poke[], user_poke_done[];
extern u8 iret_site[];
void run_access(u64 rip, u64 cs, u64 rflags, u64 rsp, u64 ss, u64 rdi);

static u64 la57;
static u64 own_cr3;
static u64 tracked_pa[MAX_TRACKED];
static u64 tracked_value[MAX_TRACKED];
static u64 tracked;

static struct __attribute__((packed)) {
	u32 reserved0;
	u64 rsp[3];
	u64 reserved1;
	u64 ist[7];
	u64 reserved2;
	unsigned short reserved3;
	unsigned short iomap_base;
} tss;

static struct __attribute__((packed)) {
	unsigned short offset_low, selector;
	u8 ist, type;
	unsigned short offset_mid;
	u32 offset_high, reserved;
} idt[32];

static inline void outb(unsigned short port, u8 value) { __asm__ volatile("outb %0, %1" ::"a"(value), "Nd"(port)); }
static inline u64 phys(const void *p) { return (u64)p - KVMA; }
static inline u64 *physmap(u64 pa) { return (u64 *)(PHYSMAP + pa); }

static inline u64 read_cr0(void) { u64 v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static inline void write_cr0(u64 v) { __asm__ volatile("mov %0, %%cr0" ::"r"(v) : "memory"); }
static inline u64 read_cr4(void) { u64 v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }
static inline void write_cr4(u64 v) { __asm__ volatile("mov %0, %%cr4" ::"r"(v) : "memory"); }
static inline void write_cr3(u64 v) { __asm__ volatile("mov %0, %%cr3" ::"r"(v) : "memory"); }

static u64 rdmsr(u32 msr) {
	u32 lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((u64)hi << 32) | lo;
}

static void wrmsr(u32 msr, u64 v) { __asm__ volatile("wrmsr" ::"c"(msr), "a"((u32)v), "d"((u32)(v >> 32))); }

static void out_char(char c) { outb(0xe9, (u8)c); }

static void out_str(const char *s) {
	while (*s)
		out_char(*s++);
}

static void out_hex(u64 v) {
	char buf[17];
	int i = 16;
	buf[i] = 0;
	do {
		buf[--i] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	out_str("0x");
	out_str(buf + i);
}

static void exit_qemu(u8 code) {
	outb(0xf4, code);
	for (;;)
		__asm__ volatile("hlt");
}

void guest_panic(void) {
	out_str("PANIC ");
	out_hex(exc_vector);
	out_char(' ');
	out_hex(exc_error);
	out_char(' ');
	out_hex(exc_cr2);
	out_char(' ');
	out_hex(exc_rip);
	out_char('\n');
	exit_qemu(1);
}

static void fail(const char *why) {
	out_str("PANIC ");
	out_str(why);
	out_char('\n');
	exit_qemu(1);
}

static void setup_cpu(void) {
	u64 base = (u64)&tss;
	u64 *desc = (u64 *)gdt_tss;
	int v;

	tss.rsp[0] = (u64)kstack_top;
	tss.ist[0] = (u64)ist_top;
	tss.iomap_base = sizeof(tss);
	desc[0] = (sizeof(tss) - 1) | ((base & 0xffffff) << 16) | (0x89UL << 40) | (((base >> 24) & 0xff) << 56);
	desc[1] = base >> 32;
	__asm__ volatile("lgdt (%0)" ::"r"(gdt_desc64));
	__asm__ volatile("ltr %w0" ::"r"(0x28));
	for (v = 0; v < 32; v++) {
		u64 handler = exc_table[v];
		idt[v].offset_low = handler & 0xffff;
		idt[v].selector = 0x08;
		idt[v].ist = 1;
		idt[v].type = 0x8e;
		idt[v].offset_mid = (handler >> 16) & 0xffff;
		idt[v].offset_high = handler >> 32;
		idt[v].reserved = 0;
	}
	struct __attribute__((packed)) {
		unsigned short limit;
		u64 base;
	} idtr = {sizeof(idt) - 1, (u64)idt};
	__asm__ volatile("lidt %0" ::"m"(idtr));
}

static void zero_range(u64 start, u64 end) {
	u64 count;
	if (end <= start)
		return;
	count = (end - start) / 8;
	u64 *p = physmap(start);
	__asm__ volatile("rep stosq" : "+D"(p), "+c"(count) : "a"(0UL) : "memory");
}

static void begin_scenario(u64 size) {
	if (size > 0x4000000UL)
		fail("scenario memory overlaps the guest");
	zero_range(0, size < LEGACY_HOLE_START ? size : LEGACY_HOLE_START);
	if (size > LEGACY_HOLE_END)
		zero_range(LEGACY_HOLE_END, size);
	tracked = 0;
}

static void write_word(u64 pa, u64 value) {
	u64 i;
	*physmap(pa) = value;
	for (i = 0; i < tracked; i++) {
		if (tracked_pa[i] == pa) {
			tracked_value[i] = value;
			return;
		}
	}
	if (tracked == MAX_TRACKED)
		fail("too many words written in one scenario");
	tracked_pa[tracked] = pa;
	tracked_value[tracked] = value;
	tracked++;
}

/* Words the processor changed (A/D bits) since the last report. */
static void report_changes(void) {
	u64 i;
	for (i = 0; i < tracked; i++) {
		u64 now = *physmap(tracked_pa[i]);
		if (now != tracked_value[i]) {
			out_str("C ");
			out_hex(tracked_pa[i]);
			out_char(' ');
			out_hex(now);
			out_char('\n');
			tracked_value[i] = now;
		}
	}
}

static int canonical(u64 va) {
	long top = (long)va >> (la57 ? 56 : 47);
	return top == 0 || top == -1;
}

static void load_controls(u64 flags) {
	u64 cr0 = read_cr0(), cr4 = read_cr4(), efer = rdmsr(0xc0000080);
	cr0 = (flags & F_WP) ? cr0 | (1UL << 16) : cr0 & ~(1UL << 16);
	cr4 &= ~((1UL << 20) | (1UL << 21) | (1UL << 7));
	cr4 |= ((flags & F_SMEP) ? 1UL << 20 : 0) | ((flags & F_SMAP) ? 1UL << 21 : 0);
	efer = (flags & F_NXE) ? efer | (1UL << 11) : efer & ~(1UL << 11);
	write_cr0(cr0);
	write_cr4(cr4);
	wrmsr(0xc0000080, efer);
}

static u64 user_alias(const u8 *p) { return USER_VA + (u64)(p - user_page); }

static u64 stub(u64 user, u8 *sup, u8 *usr) { return user ? user_alias(usr) : (u64)sup; }

/* Enter at rip under the scenario's CR3 and controls; the ending exception is in exc_*. */
static void enter(u64 rip, u64 rflags, u64 rdi, u64 cr3, u64 flags) {
	u64 user = flags & F_USER;
	u64 *slot = physmap(cr3 + 511 * 8);
	u64 saved = *slot;
	u64 slot_entry = (la57 ? phys(guest_pml4) : phys(guest_pdpt)) | 0x27;

	*slot = slot_entry;
	load_controls(flags);
	write_cr3(cr3);
	run_access(rip, user ? 0x23 : 0x08, rflags, NONCANON, user ? 0x1b : 0x10, rdi);
	write_cr3(own_cr3);
	*slot = saved;
}

/*
 * One access.  Reads and writes run a stub (see boot.S) ending in ud2 at
 * CPL 0 or 3.  A fetch is an IRETQ to the address itself with RFLAGS.TF=1: a
 * #PF with CR2 = RIP = the address means the fetch faulted; any later event
 * (the single-step trap, or an exception raised by the one instruction that
 * ran there) means it succeeded.
 */
static void do_access(u64 va, u64 cr3, u64 flags) {
	u64 kind = flags & 3, user = flags & F_USER;
	u64 rflags = 0x2 | ((flags & F_AC) ? 1UL << 18 : 0);
	int ok;

	if (kind == KIND_READ) {
		enter(stub(user, sup_read, user_read), rflags, va, cr3, flags);
		ok = exc_vector == 6 && exc_rip == stub(user, sup_read_done, user_read_done);
	} else if (kind == KIND_WRITE) {
		enter(stub(user, sup_write, user_write), rflags, va, cr3, flags);
		ok = exc_vector == 6 && exc_rip == stub(user, sup_write_done, user_write_done);
		if (!ok && exc_rip == stub(user, sup_write, user_write)) {
			enter(stub(user, sup_poke, user_poke), rflags, va, cr3, flags);
			if (exc_vector == 6 && exc_rip == stub(user, sup_poke_done, user_poke_done)) {
				out_str("X poke stored where the load faulted\n");
				report_changes();
				return;
			}
		}
	} else {
		enter(va, rflags | 0x100, NONCANON, cr3, flags);
		if (exc_vector == 14 && exc_cr2 == va && exc_rip == va)
			ok = 0;
		else if (exc_vector == 13 && !canonical(va))
			ok = 0;
		else
			ok = 1;
	}
	out_str(ok ? "OK " : "F ");
	out_hex(exc_vector);
	out_char(' ');
	out_hex(exc_error);
	out_char(' ');
	out_hex(exc_cr2);
	out_char(' ');
	out_hex(exc_rip);
	out_char('\n');
	report_changes();
}

void kmain(u64 mbi_pa) {
	u32 *mbi = (u32 *)physmap(mbi_pa);
	u32 *mods, *end;
	u64 *cmd;

	setup_cpu();
	if (!(mbi[0] & (1 << 3)) || mbi[5] == 0)
		fail("no input module");
	mods = (u32 *)physmap(mbi[6]);
	cmd = physmap(mods[0]);
	end = (u32 *)physmap(mods[1]);
	if (mods[0] < 0x4000000)
		fail("input module below 64 MiB");
	if (cmd[0] != MAGIC)
		fail("bad input magic");
	la57 = cmd[1];
	own_cr3 = la57 ? phys(pml5_boot) : phys(pml4_boot);
	out_str("READY\n");
	for (cmd += 4; (u8 *)cmd < (u8 *)end; cmd += 4) {
		switch (cmd[0]) {
		case CMD_BEGIN:
			begin_scenario(cmd[1]);
			break;
		case CMD_WRITE:
			write_word(cmd[1], cmd[2]);
			break;
		case CMD_READ:
			out_str("V ");
			out_hex(*physmap(cmd[1]));
			out_char('\n');
			break;
		case CMD_ACCESS:
			do_access(cmd[1], cmd[2], cmd[3]);
			break;
		case CMD_END:
			out_str("E\n");
			break;
		default:
			fail("unknown command");
		}
	}
	out_str("DONE\n");
	exit_qemu(0);
}
