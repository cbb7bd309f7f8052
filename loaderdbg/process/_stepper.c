/*
 * The engine's two C helpers, loaded with ctypes (this is not a Python
 * extension: loaderdbg.process.ptrace finds its path with find_spec).
 *
 * loaderdbg_step: one single step as a single foreign call: PTRACE_SINGLESTEP,
 * waitpid and, when the step ended in the plain SIGTRAP stop, PTRACE_GETREGS.
 * Why C: from Python each of the three is a ctypes call costing 1.3-1.8 us
 * with errno saving, on a step that costs ~28 us in a C loop (pinned), which
 * put the engine's loop at ~0.68x the C rate.
 * Returns the wait status (>= 0), with STEPPER_REGS_FETCHED set when *regs
 * was filled; or -errno when SINGLESTEP or waitpid failed. waitpid is not
 * retried on EINTR: -EINTR hands the wait back to Python, whose os.waitpid
 * runs signal handlers (a Ctrl-C while a stepped syscall blocks must work).
 *
 * loaderdbg_spawn_traced: the launch, vfork + PTRACE_TRACEME + execve. Why C:
 * os.fork copies the tracer's page tables and the child runs Python until
 * its execve, faulting in copies of our pages, then execve tears the copy
 * down again: ~2 ms of a ~2 ms launch here, against ~0.1 ms for a vfork
 * child that shares our memory and runs a few system calls.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/user.h>
#include <sys/wait.h>

#define STEPPER_REGS_FETCHED 0x40000000 /* above any status: events use bits 16-23 */
#define SIGTRAP_STOP 0x57f /* WIFSTOPPED, WSTOPSIG == SIGTRAP, no event */

int loaderdbg_step(pid_t pid, struct user_regs_struct *regs)
{
	int status;

	if (ptrace(PTRACE_SINGLESTEP, pid, 0, 0) == -1)
		return -errno;
	if (waitpid(pid, &status, __WALL) == -1)
		return -errno;
	if (status == SIGTRAP_STOP && ptrace(PTRACE_GETREGS, pid, 0, regs) == 0)
		return status | STEPPER_REGS_FETCHED;
	return status;
}

/* Checked once at load: the Python side's buffer must fit the struct. */
int loaderdbg_stepper_regs_size(void)
{
	return (int)sizeof(struct user_regs_struct);
}

/*
 * Start path (argv, envp) traced by the calling thread, stdin/stdout/stderr
 * from fds[] (-1: ours), in a process group of its own, without ASLR when
 * no_aslr. Returns the pid once the child has called execve (vfork), or -1
 * with *failure = errno. A child whose preparation or execve failed exits
 * with 127 and *failure = its errno. On success the child stops with the
 * SIGTRAP a traced execve sends (PTRACE_O_TRACEEXEC is not set yet).
 *
 * The child shares our memory until execve: all signals stay blocked until
 * just before it, so no handler of ours runs in it; the ones we catch get
 * their default action back (execve would do that anyway), the ones Python
 * ignores too (SIGPIPE, SIGXFSZ, and SIGINT, which is the tracer's), the
 * ones ignored by whoever started us stay ignored, as execve keeps them.
 * PTRACE_TRACEME comes last before execve: a signal stop of a traced child
 * would wait for the tracer, which vfork keeps waiting for the execve.
 */
pid_t loaderdbg_spawn_traced(const char *path, char *const argv[], char *const envp[],
			     const int fds[3], int no_aslr, int *failure)
{
	sigset_t all, before;
	pid_t pid;

	*failure = 0;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &before);
	pid = vfork();
	if (pid == 0) {
		struct sigaction dfl = { .sa_handler = SIG_DFL };
		int sig, target;

		sigemptyset(&dfl.sa_mask);
		for (sig = 1; sig < NSIG; sig++) {
			struct sigaction old;

			if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &old) != 0)
				continue;
			if (old.sa_handler == SIG_DFL && !(old.sa_flags & SA_SIGINFO))
				continue;
			if (old.sa_handler != SIG_IGN || sig == SIGPIPE || sig == SIGXFSZ || sig == SIGINT)
				sigaction(sig, &dfl, NULL);
		}
		for (target = 0; target < 3; target++)
			if (fds[target] >= 0 && dup2(fds[target], target) == -1)
				goto failed;
		if (setpgid(0, 0) == -1)
			goto failed;
		if (no_aslr)
			personality((unsigned long)personality(0xffffffff) | ADDR_NO_RANDOMIZE);
		pthread_sigmask(SIG_SETMASK, &before, NULL);
		if (ptrace(PTRACE_TRACEME, 0, 0, 0) == -1)
			goto failed;
		execve(path, argv, envp);
failed:
		*failure = errno ? errno : -1;
		_exit(127);
	}
	if (pid == -1)
		*failure = errno;
	pthread_sigmask(SIG_SETMASK, &before, NULL);
	return pid;
}
