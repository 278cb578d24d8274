/* A process for the live OOM oracle (oracles/linux/oom.py): it joins a memory cgroup, sets its
 * oom_score_adj, touches a number of private anonymous pages and reports, then waits for commands.
 *
 *   oom_hog TASKS_FILE ADJ PAGES
 *
 * TASKS_FILE is the cgroup's `tasks` (v1) or `cgroup.procs` (v2): the process writes its own pid there
 * first, so every page it touches is charged to the group (mm/memcontrol.c charges the faulting task's
 * group; cgroup v1 moves no charges with a task by default).  ADJ goes to /proc/self/oom_score_adj
 * (fs/proc/base.c __set_oom_adj: lowering it needs CAP_SYS_RESOURCE).  The mapping is one 1 GiB
 * MAP_NORESERVE region, so the pages touched are contiguous and the page tables few.
 *
 * Replies on stdout, one line each: "ready PID" after the first PAGES pages; then for each stdin line
 * "grow N", "grown" once N more pages are touched (the process may be killed before).  Exit codes: 2 the
 * cgroup could not be joined, 3 oom_score_adj could not be written, 4 mmap failed. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define REGION (1L << 30)
#define PAGE 4096L

static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -1;
    ssize_t done = write(fd, text, strlen(text));
    int saved = errno;
    close(fd);
    errno = saved;
    return done < 0 ? -1 : 0;
}

int main(int argc, char **argv) {
    char line[64];
    if (argc != 4) {
        fprintf(stderr, "usage: oom_hog TASKS_FILE ADJ PAGES\n");
        return 1;
    }
    snprintf(line, sizeof line, "%d", (int)getpid());
    if (write_file(argv[1], line) < 0) {
        fprintf(stderr, "joining %s: %s\n", argv[1], strerror(errno));
        return 2;
    }
    if (write_file("/proc/self/oom_score_adj", argv[2]) < 0) {
        fprintf(stderr, "oom_score_adj %s: %s\n", argv[2], strerror(errno));
        return 3;
    }
    char *region = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (region == MAP_FAILED) {
        fprintf(stderr, "mmap: %s\n", strerror(errno));
        return 4;
    }
    long touched = 0, pages = atol(argv[3]);
    for (; touched < pages && touched < REGION / PAGE; touched++)
        region[touched * PAGE] = 1;
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        long more = 0;
        if (sscanf(line, "grow %ld", &more) != 1)
            continue;
        for (long end = touched + more; touched < end && touched < REGION / PAGE; touched++)
            region[touched * PAGE] = 1;
        printf("grown\n");
        fflush(stdout);
    }
    return 0;
}
