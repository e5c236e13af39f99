/*
 * skiff-pause is the process of every pod sandbox: it holds the pod's
 * namespaces open, reaps orphaned children and exits on SIGINT or SIGTERM.
 * skiff builds its pause image from this program, so no image is pulled to
 * start a pod. It is C, as upstream's pause is: a Go program would keep
 * about 0.7 MiB of its own memory in every pod for its runtime, against
 * some 50 KiB here.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig) { stop_signal = sig; }

/* As PID 1 of the pod, children whose parents died are ours to reap. */
static void on_child(int sig) {
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0) {
	}
}

int main(int argc, char **argv) {
	if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
		puts("skiff-pause");
		return 0;
	}
	if (getpid() != 1)
		fputs("warning: pause should be the first process of a pod\n", stderr);

	/* The stop signals stay blocked but while waiting, so one that comes
	 * between the check and the wait is not lost. */
	sigset_t stops, waiting;
	sigemptyset(&stops);
	sigaddset(&stops, SIGINT);
	sigaddset(&stops, SIGTERM);
	struct sigaction stop_action = {.sa_handler = on_stop};
	struct sigaction child_action = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
	if (sigprocmask(SIG_BLOCK, &stops, &waiting) != 0 || sigaction(SIGINT, &stop_action, NULL) != 0 ||
	    sigaction(SIGTERM, &stop_action, NULL) != 0 || sigaction(SIGCHLD, &child_action, NULL) != 0) {
		perror("pause: set up signal handling");
		return 1;
	}
	sigdelset(&waiting, SIGINT);
	sigdelset(&waiting, SIGTERM);
	while (!stop_signal)
		sigsuspend(&waiting);
	fprintf(stderr, "shutting down, got signal: %s\n", strsignal(stop_signal));
	return 0;
}
