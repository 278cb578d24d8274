/*
 * /init of the NUMA oracle's initramfs: runs the step script /script under a
 * real multi-node Linux and prints one JSON object per line on /dev/ttyS1.
 *
 * The script is line based (built by oracles/numa/guest.py): "case NAME"
 * starts a case, which runs in a fresh child process (its own mm and task
 * policy); every other line is one step, "op arg ...".  Steps and their
 * system calls (all through syscall(2), no libnuma):
 *
 *   set_mempolicy MODE NODES [static|relative]     set_mempolicy(2)
 *   get_mempolicy                                  get_mempolicy(2), the task policy
 *   get_mempolicy_addr R P                         get_mempolicy(2) MPOL_F_ADDR, the policy at a page
 *   node_of R P                                    get_mempolicy(2) MPOL_F_NODE|MPOL_F_ADDR
 *   mmap R N                                       mmap(2) anonymous private, N pages, MADV_NOHUGEPAGE
 *   mbind R FIRST COUNT MODE NODES [FLAG...]       mbind(2); FLAG: strict move move_all static relative
 *   touch R P CPU                                  sched_setaffinity(2) to CPU, then a write to the page
 *   fill R FIRST COUNT CPU                         touch of COUNT pages from FIRST, all from CPU
 *   where R                                        move_pages(2) with nodes=NULL: each page's node or -errno
 *   migrate R FIRST COUNT NODE                     move_pages(2) to NODE: return value and status per page
 *   numastat                                       /sys/devices/system/node/nodeN/numastat of every node
 *   meminfo                                        MemTotal, MemFree of /sys/devices/system/node/nodeN/meminfo
 *
 * NODES is "-" (empty) or a comma list; MODE is default, preferred, bind,
 * interleave, local or preferred_many.  A failing system call is an answer,
 * reported as {"errno": E, "error": "NAME"}; a malformed step is reported as
 * {"bad": "..."} and ends the case.  The first line describes the topology
 * the kernel found, the last is {"done": true}; then the guest powers off.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/mempolicy.h>
#include <linux/reboot.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_REGIONS 16
#define MAX_NODES 64
#define MAX_PAGES 65536
#define PAGE 4096UL

static FILE *out;
static const char *case_name = "";
static int step_no;
static char *regions[MAX_REGIONS];
static unsigned long region_pages[MAX_REGIONS];

static const char *const mode_names[] = {"default", "preferred", "bind", "interleave", "local", "preferred_many"};
#define NMODES (int)(sizeof(mode_names) / sizeof(mode_names[0]))

static void emit(const char *fmt, ...)
{
	va_list ap;
	fprintf(out, "{\"case\": \"%s\", \"step\": %d, ", case_name, step_no);
	va_start(ap, fmt);
	vfprintf(out, fmt, ap);
	va_end(ap);
	fputs("}\n", out);
	fflush(out);
}

static void emit_errno(const char *op, int err)
{
	emit("\"op\": \"%s\", \"errno\": %d, \"error\": \"%s\"", op, err, strerrorname_np(err) ? strerrorname_np(err) : "?");
}

static int parse_int(const char *s, long *v)
{
	char *end;
	if (!s || !*s)
		return -1;
	errno = 0;
	*v = strtol(s, &end, 10);
	return (*end || errno) ? -1 : 0;
}

/* "-" or "0,1,3" into a bitmask of MAX_NODES bits. */
static int parse_nodes(const char *s, unsigned long *mask)
{
	*mask = 0;
	if (!s)
		return -1;
	if (!strcmp(s, "-"))
		return 0;
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", s);
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		long n;
		if (parse_int(t, &n) || n < 0 || n >= MAX_NODES)
			return -1;
		*mask |= 1UL << n;
	}
	return 0;
}

static int parse_mode(const char *s)
{
	for (int i = 0; s && i < NMODES; i++)
		if (!strcmp(s, mode_names[i]))
			return i;
	return -1;
}

static void print_mask(char *buf, size_t len, unsigned long mask)
{
	size_t pos = 0;
	buf[0] = 0;
	pos += snprintf(buf + pos, len - pos, "[");
	for (int n = 0; n < MAX_NODES; n++)
		if (mask & (1UL << n))
			pos += snprintf(buf + pos, len - pos, "%s%d", pos > 1 ? ", " : "", n);
	snprintf(buf + pos, len - pos, "]");
}

static const char *mode_name(int mode)
{
	return mode >= 0 && mode < NMODES ? mode_names[mode] : "?";
}

/* Mode flags (static, relative) and mbind flags (strict, move, move_all) from tokens. */
static int parse_flags(char **tok, int n, int *mode_flags, unsigned *mf)
{
	*mode_flags = 0;
	if (mf)
		*mf = 0;
	for (int i = 0; i < n; i++) {
		if (!strcmp(tok[i], "static"))
			*mode_flags |= MPOL_F_STATIC_NODES;
		else if (!strcmp(tok[i], "relative"))
			*mode_flags |= MPOL_F_RELATIVE_NODES;
		else if (mf && !strcmp(tok[i], "strict"))
			*mf |= MPOL_MF_STRICT;
		else if (mf && !strcmp(tok[i], "move"))
			*mf |= MPOL_MF_MOVE;
		else if (mf && !strcmp(tok[i], "move_all"))
			*mf |= MPOL_MF_MOVE_ALL;
		else
			return -1;
	}
	return 0;
}

static char *page_addr(long r, long p)
{
	if (r < 0 || r >= MAX_REGIONS || !regions[r] || p < 0 || (unsigned long)p >= region_pages[r])
		return NULL;
	return regions[r] + p * PAGE;
}

static int online_nodes(int *nodes)
{
	int n = 0;
	char path[64];
	for (int i = 0; i < MAX_NODES; i++) {
		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d", i);
		if (access(path, F_OK) == 0)
			nodes[n++] = i;
	}
	return n;
}

static void read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	buf[0] = 0;
	if (f) {
		if (!fgets(buf, (int)len, f))
			buf[0] = 0;
		fclose(f);
	}
	buf[strcspn(buf, "\n")] = 0;
}

static void topology(void)
{
	int nodes[MAX_NODES], n = online_nodes(nodes);
	char buf[512], path[96], release[128];
	read_line("/proc/sys/kernel/osrelease", release, sizeof(release));
	fprintf(out, "{\"topology\": {\"release\": \"%s\", \"cpus_online\": %ld, \"nodes\": [", release,
		sysconf(_SC_NPROCESSORS_ONLN));
	for (int i = 0; i < n; i++) {
		fprintf(out, "%s{\"node\": %d", i ? ", " : "", nodes[i]);
		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/cpulist", nodes[i]);
		read_line(path, buf, sizeof(buf));
		fprintf(out, ", \"cpulist\": \"%s\"", buf);
		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/distance", nodes[i]);
		read_line(path, buf, sizeof(buf));
		fprintf(out, ", \"distance\": \"%s\"", buf);
		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/meminfo", nodes[i]);
		FILE *f = fopen(path, "r");
		long kb = -1;
		while (f && fgets(buf, sizeof(buf), f))
			if (strstr(buf, "MemTotal:"))
				sscanf(strstr(buf, "MemTotal:") + 9, "%ld", &kb);
		if (f)
			fclose(f);
		fprintf(out, ", \"memtotal_kb\": %ld}", kb);
	}
	fputs("]}}\n", out);
	fflush(out);
}

static void numastat(void)
{
	int nodes[MAX_NODES], n = online_nodes(nodes);
	char buf[4096], path[96], line[128];
	size_t pos = 0;
	pos += snprintf(buf + pos, sizeof(buf) - pos, "\"op\": \"numastat\", \"numastat\": {");
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/numastat", nodes[i]);
		FILE *f = fopen(path, "r");
		pos += snprintf(buf + pos, sizeof(buf) - pos, "%s\"%d\": {", i ? ", " : "", nodes[i]);
		int first = 1;
		while (f && fgets(line, sizeof(line), f)) {
			char name[64];
			unsigned long v;
			if (sscanf(line, "%63s %lu", name, &v) == 2) {
				pos += snprintf(buf + pos, sizeof(buf) - pos, "%s\"%s\": %lu", first ? "" : ", ", name, v);
				first = 0;
			}
		}
		if (f)
			fclose(f);
		pos += snprintf(buf + pos, sizeof(buf) - pos, "}");
	}
	snprintf(buf + pos, sizeof(buf) - pos, "}");
	emit("%s", buf);
}

static void meminfo(void)
{
	int nodes[MAX_NODES], n = online_nodes(nodes);
	char buf[2048], path[96], line[160];
	size_t pos = 0;
	pos += snprintf(buf + pos, sizeof(buf) - pos, "\"op\": \"meminfo\", \"meminfo\": {");
	for (int i = 0; i < n; i++) {
		long total = -1, free_kb = -1;
		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/meminfo", nodes[i]);
		FILE *f = fopen(path, "r");
		while (f && fgets(line, sizeof(line), f)) {
			char *p;
			if ((p = strstr(line, "MemTotal:")))
				sscanf(p + 9, "%ld", &total);
			else if ((p = strstr(line, "MemFree:")))
				sscanf(p + 8, "%ld", &free_kb);
		}
		if (f)
			fclose(f);
		pos += snprintf(buf + pos, sizeof(buf) - pos, "%s\"%d\": {\"total_kb\": %ld, \"free_kb\": %ld}",
				i ? ", " : "", nodes[i], total, free_kb);
	}
	snprintf(buf + pos, sizeof(buf) - pos, "}");
	emit("%s", buf);
}

static int pin(long cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0) {
		emit_errno("sched_setaffinity", errno);
		return -1;
	}
	return 0;
}

static void do_get_mempolicy(char *addr, unsigned long flags, const char *op)
{
	int mode = -1;
	unsigned long mask = 0;
	char m[256];
	if (syscall(SYS_get_mempolicy, &mode, (flags & MPOL_F_NODE) ? NULL : &mask, (flags & MPOL_F_NODE) ? 0 : MAX_NODES,
		    addr, flags) < 0) {
		emit_errno(op, errno);
		return;
	}
	if (flags & MPOL_F_NODE) {
		emit("\"op\": \"%s\", \"node\": %d", op, mode);
		return;
	}
	print_mask(m, sizeof(m), mask);
	int base = mode & ~(MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES | MPOL_F_NUMA_BALANCING);
	emit("\"op\": \"%s\", \"mode\": \"%s\", \"mode_value\": %d, \"static\": %s, \"relative\": %s, \"nodes\": %s", op,
	     mode_name(base), mode, (mode & MPOL_F_STATIC_NODES) ? "true" : "false",
	     (mode & MPOL_F_RELATIVE_NODES) ? "true" : "false", m);
}

static void do_where(long r, const char *op)
{
	static void *pages[MAX_PAGES];
	static int status[MAX_PAGES];
	static char buf[MAX_PAGES * 6 + 64];
	if (!page_addr(r, 0)) {
		emit("\"op\": \"%s\", \"bad\": \"no region %ld\"", op, r);
		return;
	}
	unsigned long n = region_pages[r];
	for (unsigned long i = 0; i < n; i++) {
		pages[i] = regions[r] + i * PAGE;
		status[i] = -12345;
	}
	long ret = syscall(SYS_move_pages, 0, n, pages, NULL, status, 0);
	if (ret < 0) {
		emit_errno(op, errno);
		return;
	}
	size_t pos = 0;
	for (unsigned long i = 0; i < n; i++)
		pos += snprintf(buf + pos, sizeof(buf) - pos, "%s%d", i ? ", " : "", status[i]);
	emit("\"op\": \"%s\", \"region\": %ld, \"nodes\": [%s]", op, r, buf);
}

static void do_migrate(long r, long first, long count, long node)
{
	static void *pages[MAX_PAGES];
	static int nodes[MAX_PAGES], status[MAX_PAGES];
	static char buf[MAX_PAGES * 6 + 64];
	if (count <= 0 || !page_addr(r, first) || !page_addr(r, first + count - 1)) {
		emit("\"op\": \"migrate\", \"bad\": \"pages %ld..%ld are not in region %ld\"", first, first + count - 1, r);
		return;
	}
	for (long i = 0; i < count; i++) {
		pages[i] = page_addr(r, first + i);
		nodes[i] = (int)node;
		status[i] = -12345;
	}
	long ret = syscall(SYS_move_pages, 0, count, pages, nodes, status, MPOL_MF_MOVE);
	if (ret < 0) {
		emit_errno("migrate", errno);
		return;
	}
	size_t pos = 0;
	for (long i = 0; i < count; i++)
		pos += snprintf(buf + pos, sizeof(buf) - pos, "%s%d", i ? ", " : "", status[i]);
	emit("\"op\": \"migrate\", \"returned\": %ld, \"status\": [%s]", ret, buf);
}

/* One step; returns -1 when it was malformed (the case ends). */
static int step(char **tok, int n)
{
	const char *op = tok[0];
	long a, b, c, d;
	int mode, mode_flags;
	unsigned mf;
	unsigned long mask;
	if (!strcmp(op, "set_mempolicy")) {
		if (n < 3 || (mode = parse_mode(tok[1])) < 0 || parse_nodes(tok[2], &mask) ||
		    parse_flags(tok + 3, n - 3, &mode_flags, NULL))
			goto bad;
		if (syscall(SYS_set_mempolicy, mode | mode_flags, mask ? &mask : NULL, mask ? MAX_NODES + 1 : 0) < 0)
			emit_errno(op, errno);
		else
			emit("\"op\": \"%s\", \"ok\": true", op);
	} else if (!strcmp(op, "get_mempolicy") && n == 1) {
		do_get_mempolicy(NULL, 0, op);
	} else if (!strcmp(op, "get_mempolicy_addr") || !strcmp(op, "node_of")) {
		char *addr;
		if (n != 3 || parse_int(tok[1], &a) || parse_int(tok[2], &b) || !(addr = page_addr(a, b)))
			goto bad;
		do_get_mempolicy(addr, MPOL_F_ADDR | (op[0] == 'n' ? MPOL_F_NODE : 0), op);
	} else if (!strcmp(op, "mmap")) {
		if (n != 3 || parse_int(tok[1], &a) || parse_int(tok[2], &b) || a < 0 || a >= MAX_REGIONS || regions[a] ||
		    b <= 0 || b > MAX_PAGES)
			goto bad;
		void *p = mmap(NULL, b * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			emit_errno(op, errno);
			return 0;
		}
		if (madvise(p, b * PAGE, MADV_NOHUGEPAGE) < 0) {
			emit_errno("madvise", errno);
			return 0;
		}
		regions[a] = p;
		region_pages[a] = b;
		emit("\"op\": \"%s\", \"region\": %ld, \"start\": %lu, \"pages\": %ld", op, a, (unsigned long)p, b);
	} else if (!strcmp(op, "mbind")) {
		if (n < 6 || parse_int(tok[1], &a) || parse_int(tok[2], &b) || parse_int(tok[3], &c) || c <= 0 ||
		    !page_addr(a, b) || !page_addr(a, b + c - 1) || (mode = parse_mode(tok[4])) < 0 ||
		    parse_nodes(tok[5], &mask) || parse_flags(tok + 6, n - 6, &mode_flags, &mf))
			goto bad;
		if (syscall(SYS_mbind, page_addr(a, b), c * PAGE, mode | mode_flags, mask ? &mask : NULL,
			    mask ? MAX_NODES + 1 : 0, mf) < 0)
			emit_errno(op, errno);
		else
			emit("\"op\": \"%s\", \"ok\": true", op);
	} else if (!strcmp(op, "touch")) {
		char *addr;
		if (n != 4 || parse_int(tok[1], &a) || parse_int(tok[2], &b) || parse_int(tok[3], &c) || c < 0 ||
		    c >= CPU_SETSIZE || !(addr = page_addr(a, b)))
			goto bad;
		if (pin(c) < 0)
			return 0;
		*(volatile char *)addr = 1;
		emit("\"op\": \"%s\", \"cpu\": %d", op, sched_getcpu());
	} else if (!strcmp(op, "fill")) {
		if (n != 5 || parse_int(tok[1], &a) || parse_int(tok[2], &b) || parse_int(tok[3], &c) || parse_int(tok[4], &d) ||
		    c <= 0 || d < 0 || d >= CPU_SETSIZE || !page_addr(a, b) || !page_addr(a, b + c - 1))
			goto bad;
		if (pin(d) < 0)
			return 0;
		for (long i = 0; i < c; i++)
			*(volatile char *)page_addr(a, b + i) = 1;
		emit("\"op\": \"%s\", \"cpu\": %d", op, sched_getcpu());
	} else if (!strcmp(op, "where")) {
		if (n != 2 || parse_int(tok[1], &a))
			goto bad;
		do_where(a, op);
	} else if (!strcmp(op, "migrate")) {
		if (n != 5 || parse_int(tok[1], &a) || parse_int(tok[2], &b) || parse_int(tok[3], &c) || parse_int(tok[4], &d))
			goto bad;
		do_migrate(a, b, c, d);
	} else if (!strcmp(op, "numastat") && n == 1) {
		numastat();
	} else if (!strcmp(op, "meminfo") && n == 1) {
		meminfo();
	} else {
		goto bad;
	}
	return 0;
bad:
	emit("\"op\": \"%s\", \"bad\": \"malformed step\"", op);
	return -1;
}

static void run_case(char **lines, int count)
{
	for (int i = 0; i < count; i++) {
		char *tok[32];
		int n = 0;
		char *save = NULL;
		step_no = i;
		for (char *t = strtok_r(lines[i], " \t", &save); t && n < 32; t = strtok_r(NULL, " \t", &save))
			tok[n++] = t;
		if (n && step(tok, n) < 0)
			exit(2);
	}
	exit(0);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	size_t got;
	while ((got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
		len += got;
		if (len + 1 >= cap)
			buf = realloc(buf, cap *= 2);
	}
	fclose(f);
	buf[len] = 0;
	return buf;
}

int main(void)
{
	mkdir("/dev", 0755);
	mkdir("/proc", 0755);
	mkdir("/sys", 0755);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	int fd = open("/dev/ttyS1", O_WRONLY | O_NOCTTY);
	out = fd >= 0 ? fdopen(fd, "w") : stdout;
	topology();
	char *script = slurp("/script");
	if (!script) {
		fputs("{\"fatal\": \"no /script in the initramfs\"}\n", out);
	} else {
		static char *lines[8192];
		int count = 0;
		for (char *save = NULL, *l = strtok_r(script, "\n", &save); l && count < 8192; l = strtok_r(NULL, "\n", &save))
			lines[count++] = l;
		for (int i = 0; i < count;) {
			if (strncmp(lines[i], "case ", 5)) {
				fprintf(out, "{\"fatal\": \"line %d is not a case: %s\"}\n", i, lines[i]);
				break;
			}
			int end = i + 1;
			while (end < count && strncmp(lines[end], "case ", 5))
				end++;
			case_name = lines[i] + 5;
			fflush(out);
			pid_t pid = fork();
			if (pid == 0)
				run_case(lines + i + 1, end - i - 1);
			int status = 0;
			waitpid(pid, &status, 0);
			fprintf(out, "{\"case\": \"%s\", \"exit\": %d}\n", case_name,
				WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
			fflush(out);
			i = end;
		}
	}
	fputs("{\"done\": true}\n", out);
	fflush(out);
	sync();
	reboot(LINUX_REBOOT_CMD_POWER_OFF);
	return 0;
}
