/*
 * Loads and stores that may fault, for the Linux oracle (mmcheck/linux_oracle.py).
 *
 * Python cannot survive a SIGSEGV raised by its own memory access, and
 * touching the page from another process would change the very COW state
 * under test.  So the access is made here, in the model process itself,
 * between sigsetjmp and a SIGSEGV/SIGBUS handler that siglongjmps back with
 * the signal, its si_code and the hardware page-fault error code the kernel
 * puts in the signal frame (uc_mcontext.gregs[REG_ERR], arch/x86/kernel/signal.c
 * setup_sigcontext from thread.error_code, set by arch/x86/mm/fault.c
 * set_signal_archinfo).
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <ucontext.h>

/*
 * The handler runs on an alternate stack that faults_before() touches, with
 * the handler's globals, right before each access: after a fork these pages
 * are copy-on-write, and the kernel writing the signal frame (or the handler
 * writing fault_info) would otherwise take a fault of its own inside the
 * counted window.  The access itself counts nothing when it ends in a signal
 * (mm/memory.c mm_account_fault skips VM_FAULT_ERROR; a bad area never gets
 * to handle_mm_fault), and now nothing else in the window does either.
 */
#define ALT_STACK (64 * 1024)
static unsigned char alt_stack[ALT_STACK] __attribute__((aligned(4096)));

static sigjmp_buf landing;
static volatile sig_atomic_t armed;
static volatile int64_t fault_info[4];

static void on_fault(int sig, siginfo_t *si, void *raw)
{
	ucontext_t *uc = raw;

	if (!armed) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	armed = 0;
	fault_info[0] = sig;
	fault_info[1] = si->si_code;
	fault_info[2] = (int64_t)(uintptr_t)si->si_addr;
	fault_info[3] = uc->uc_mcontext.gregs[REG_ERR];
	siglongjmp(landing, 1);
}

int mmc_install(void)
{
	struct sigaction sa;

	stack_t ss;

	memset(&ss, 0, sizeof(ss));
	ss.ss_sp = alt_stack;
	ss.ss_size = ALT_STACK;
	if (sigaltstack(&ss, NULL))
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, NULL) || sigaction(SIGBUS, &sa, NULL))
		return -1;
	return 0;
}

static void copy_info(int64_t *info)
{
	for (int i = 0; i < 4; i++)
		info[i] = fault_info[i];
}

/*
 * The process's minor and major fault counts (getrusage: the task's min_flt
 * and maj_flt, counted by mm/memory.c mm_account_fault), taken right before
 * and right after the access so that no fault of the Python worker itself
 * falls in between: info[4] and info[5] get the access's own faults.
 */
static struct rusage before_access;

static void faults_before(void)
{
	for (int i = 0; i < ALT_STACK; i += 4096)
		((volatile unsigned char *)alt_stack)[i] = 0;
	for (int i = 0; i < 4; i++)
		fault_info[i] = 0;
	armed = 0;
	memset(&before_access, 0, sizeof(before_access));
	getrusage(RUSAGE_SELF, &before_access);
}

static void faults_after(int64_t *info)
{
	struct rusage now;

	getrusage(RUSAGE_SELF, &now);
	info[4] = now.ru_minflt - before_access.ru_minflt;
	info[5] = now.ru_majflt - before_access.ru_majflt;
}

/*
 * Returns 0 and the word in *value, or the signal number with info[] = {sig, si_code, si_addr, error code};
 * either way info[4], info[5] = the minor and major faults the access took.
 */
int mmc_load(uint64_t address, uint64_t *value, int64_t *info)
{
	if (sigsetjmp(landing, 1)) {
		faults_after(info);
		copy_info(info);
		return (int)info[0];
	}
	faults_before();
	armed = 1;
	uint64_t word = *(volatile uint64_t *)(uintptr_t)address;
	armed = 0;
	faults_after(info);
	*value = word;
	return 0;
}

int mmc_store(uint64_t address, uint64_t value, int64_t *info)
{
	if (sigsetjmp(landing, 1)) {
		faults_after(info);
		copy_info(info);
		return (int)info[0];
	}
	faults_before();
	armed = 1;
	*(volatile uint64_t *)(uintptr_t)address = value;
	armed = 0;
	faults_after(info);
	return 0;
}
