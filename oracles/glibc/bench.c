/* glibc's malloc timed on one sequence of calls: the physical limit for the model's benchmark.
 *
 * Reads the sequence from stdin as driver.c does ("m N" malloc, "f I" free of call I's pointer), then runs it
 * once untimed (so the heap is grown and its pages touched) and REPEATS times more, each run freeing what
 * it left live, and writes the number of calls and the best run's nanoseconds.  Nothing is written between
 * the calls.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define MAX_CALLS 1000000
#define REPEATS 5

static char kind[MAX_CALLS];
static long arg[MAX_CALLS];
static void *returned[MAX_CALLS];
static char freed[MAX_CALLS];

static long run(long calls) {
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long i = 0; i < calls; i++) {
        if (kind[i] == 'm') {
            returned[i] = malloc((size_t)arg[i]);
            freed[i] = 0;
        } else {
            free(returned[arg[i]]);
            freed[arg[i]] = 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    for (long i = 0; i < calls; i++)
        if (kind[i] == 'm' && !freed[i]) free(returned[i]);
    return (end.tv_sec - start.tv_sec) * 1000000000L + (end.tv_nsec - start.tv_nsec);
}

int main(void) {
    long calls = 0;
    char op;
    long value;
    while (calls < MAX_CALLS && scanf(" %c %ld", &op, &value) == 2) {
        if (op != 'm' && op != 'f') return 4;
        if (op == 'f' && (value < 0 || value >= calls)) return 5;
        kind[calls] = op;
        arg[calls] = value;
        calls++;
    }
    long best = run(calls);
    for (int r = 0; r < REPEATS; r++) {
        long t = run(calls);
        if (t < best) best = t;
    }
    printf("%ld %ld\n", calls, best);
    return 0;
}
