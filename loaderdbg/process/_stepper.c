/*
 * One single step as a single foreign call: PTRACE_SINGLESTEP, waitpid and,
 * when the step ended in the plain SIGTRAP stop, PTRACE_GETREGS.
 *
 * Why C: from Python each of the three is a ctypes call costing 1.3-1.8 us
 * with errno saving, on a step that costs ~28 us in a C loop (pinned), which
 * put the engine's loop at ~0.68x the C rate. This is not a Python extension:
 * loaderdbg.process.ptrace loads it with ctypes (find_spec gives its path).
 *
 * Returns the wait status (>= 0), with STEPPER_REGS_FETCHED set when *regs
 * was filled; or -errno when SINGLESTEP or waitpid failed. waitpid is not
 * retried on EINTR: -EINTR hands the wait back to Python, whose os.waitpid
 * runs signal handlers (a Ctrl-C while a stepped syscall blocks must work).
 */
#define _GNU_SOURCE
#include <errno.h>
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
