/* The glibc oracle's driver: one sequence of allocator calls in a fresh process.
 *
 * Reads the whole sequence from stdin before the first call, one call a line:
 *   m N        malloc(N)
 *   c N M      calloc(N, M)
 *   r I N      realloc(the pointer call I returned, N)
 *   f I        free(the pointer call I returned)
 *   t N        malloc_trim(N)
 *   o P V      mallopt(P, V)
 * and after each call writes one line:
 *   I KIND OFF LEN USABLE BRK RET arena ordblks smblks hblks hblkhd uordblks fordblks fsmblks keepcost
 * KIND is h (OFF from the heap start, the program break before the first call),
 * m (mmapped: OFF inside its mapping, LEN the mapping's length), n (NULL) or
 * - (no pointer: free, malloc_trim, mallopt; RET their int result).  BRK is
 * sbrk(0) minus the heap start.  A first line "S MISALIGN" plus the same
 * mallinfo2 fields tells where the break started (its offset in its page) and
 * that nothing was allocated before the first call.
 *
 * Nothing here allocates: output goes through write(2) from a static buffer
 * (stdio may call malloc), input is read with read(2) into a static buffer.
 */
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_INPUT (4 << 20)
#define MAX_CALLS 200000

static char input[MAX_INPUT];
static void *returned[MAX_CALLS];
static char line[512];
static size_t line_len;
static uintptr_t heap_start;

static void put_char(char c) { line[line_len++] = c; }

static void put_str(const char *s) {
    while (*s) put_char(*s++);
}

static void put_long(long v) {
    char digits[24];
    int n = 0;
    unsigned long u = v < 0 ? (unsigned long)(-v) : (unsigned long)v;
    if (v < 0) put_char('-');
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    while (n) put_char(digits[--n]);
}

static void flush_line(void) {
    size_t done = 0;
    put_char('\n');
    while (done < line_len) {
        ssize_t w = write(1, line + done, line_len - done);
        if (w <= 0) _exit(3);
        done += (size_t)w;
    }
    line_len = 0;
}

static void put_mallinfo(void) {
    struct mallinfo2 mi = mallinfo2();
    size_t fields[] = {mi.arena, mi.ordblks, mi.smblks, mi.hblks, mi.hblkhd,
                       mi.uordblks, mi.fordblks, mi.fsmblks, mi.keepcost};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        put_char(' ');
        put_long((long)fields[i]);
    }
}

static void report(long index, void *p, long ret, int has_pointer) {
    put_long(index);
    if (!has_pointer) {
        put_str(" - 0 0 0");
    } else if (p == NULL) {
        put_str(" n 0 0 0");
    } else {
        /* The chunk header (malloc.c, struct malloc_chunk): the size word
           before the pointer, IS_MMAPPED its bit 1; an mmapped chunk's
           prev_size is its offset from the mapping's start (sysmalloc_mmap). */
        volatile uintptr_t addr = (uintptr_t)p; /* hides the header from gcc's bounds tracking */
        size_t size = *(const size_t *)(addr - 8);
        size_t prev = *(const size_t *)(addr - 16);
        if (size & 2) {
            put_str(" m ");
            put_long((long)(16 + prev));
            put_char(' ');
            put_long((long)(prev + (size & ~(size_t)7)));
        } else {
            put_str(" h ");
            put_long((long)((uintptr_t)p - heap_start));
            put_str(" 0");
        }
        put_char(' ');
        put_long((long)malloc_usable_size(p));
    }
    put_char(' ');
    put_long((long)((uintptr_t)sbrk(0) - heap_start));
    put_char(' ');
    put_long(ret);
    put_mallinfo();
    flush_line();
}

static long next_number(char **cursor) {
    char *s = *cursor;
    long sign = 1, v = 0;
    while (*s == ' ') s++;
    if (*s == '-') {
        sign = -1;
        s++;
    }
    if (*s < '0' || *s > '9') _exit(4);
    while (*s >= '0' && *s <= '9') v = v * 10 + (*s++ - '0');
    *cursor = s;
    return sign * v;
}

static void *pointer_of(long index, long calls) {
    if (index < 0 || index >= calls) _exit(5);
    return returned[index];
}

int main(void) {
    size_t used = 0;
    for (;;) {
        ssize_t got = read(0, input + used, MAX_INPUT - 1 - used);
        if (got < 0) _exit(2);
        if (got == 0) break;
        used += (size_t)got;
        if (used >= MAX_INPUT - 1) _exit(2);
    }
    input[used] = 0;
    heap_start = (uintptr_t)sbrk(0);
    put_str("S ");
    put_long((long)(heap_start & 4095));
    put_mallinfo();
    flush_line();

    long calls = 0;
    char *cursor = input;
    while (*cursor) {
        char op = *cursor++;
        if (op == '\n' || op == ' ') continue;
        if (calls >= MAX_CALLS) _exit(6);
        void *p = NULL;
        long ret = 0;
        int has_pointer = 1;
        long a, b;
        switch (op) {
        case 'm':
            p = malloc((size_t)next_number(&cursor));
            break;
        case 'c':
            a = next_number(&cursor);
            b = next_number(&cursor);
            p = calloc((size_t)a, (size_t)b);
            break;
        case 'r':
            a = next_number(&cursor);
            b = next_number(&cursor);
            p = realloc(pointer_of(a, calls), (size_t)b);
            break;
        case 'f':
            free(pointer_of(next_number(&cursor), calls));
            has_pointer = 0;
            break;
        case 't':
            ret = malloc_trim((size_t)next_number(&cursor));
            has_pointer = 0;
            break;
        case 'o':
            a = next_number(&cursor);
            b = next_number(&cursor);
            ret = mallopt((int)a, (int)b);
            has_pointer = 0;
            break;
        default:
            _exit(4);
        }
        returned[calls] = p;
        report(calls, p, ret, has_pointer);
        calls++;
    }
    return 0;
}
