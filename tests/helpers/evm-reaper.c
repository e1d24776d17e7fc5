/*
 * evm-reaper - a reaper-mode loop for the PID 1 / subreaper tests.
 *
 *   evm-reaper CHILDREN ORPHANS
 *
 * Creates an EVM_LOOP_REAPER loop (PID 1 inside `unshare --pid --fork`, a
 * child subreaper otherwise), spawns CHILDREN copies of
 * `evm-helper orphans ORPHANS exit 0` (each leaves ORPHANS grandchildren
 * behind that exit 50 ms later, all around the same instant), and prints
 * one line per event:
 *
 *   mode pid1 yes|no subreaper yes|no
 *   spawn PID
 *   exit PID code C signal S
 *   orphan PID code C
 *   done exits E orphans O children-left K zombies Z
 *
 * It exits 0 once every child has exited and CHILDREN*ORPHANS orphans have
 * been reaped (children-left and zombies are counted after evm_loop_free),
 * 2 on a setup error; SIGALRM ends it after 60 s without getting there.
 * The spawn path follows EVM_SPAWN_MODE / EVM_NO_PIDFD as usual.
 *
 * It links libevmon, so mk/libtest.mk builds it (not the plain helper rule).
 */
#include <evmon.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static int want_exits, want_orphans, exits, orphans;

static void on_event(struct evm_loop *loop, const struct evm_event *ev, void *data)
{
	(void)data;
	switch (ev->type) {
	case EVM_EV_SPAWN:
		printf("spawn %d\n", (int)ev->pid);
		break;
	case EVM_EV_EXIT:
		printf("exit %d code %d signal %d\n", (int)ev->pid, ev->exit->code, ev->exit->signal);
		exits++;
		break;
	case EVM_EV_ORPHAN:
		printf("orphan %d code %d\n", (int)ev->pid, ev->exit->code);
		orphans++;
		break;
	case EVM_EV_WARNING:
		printf("warning %s\n", ev->message);
		break;
	default:
		break;
	}
	if (exits >= want_exits && orphans >= want_orphans)
		evm_loop_stop(loop);
}

/* children of ours still in /proc (zombies included), and how many are zombies */
static void count_children(int *children, int *zombies)
{
	char path[64], buf[8192];
	*children = *zombies = 0;
	snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)getpid());
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = 0;
	for (char *s = strtok(buf, " \n"); s; s = strtok(NULL, " \n")) {
		char stat[64], st[512];
		(*children)++;
		snprintf(stat, sizeof(stat), "/proc/%s/stat", s);
		int sf = open(stat, O_RDONLY | O_CLOEXEC);
		ssize_t k = sf >= 0 ? read(sf, st, sizeof(st) - 1) : -1;
		if (sf >= 0)
			close(sf);
		st[k > 0 ? k : 0] = 0;
		char *rp = strrchr(st, ')');
		if (rp && rp[1] == ' ' && rp[2] == 'Z')
			(*zombies)++;
	}
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: evm-reaper CHILDREN ORPHANS\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	int nchildren = atoi(argv[1]);
	char *norphans = argv[2];
	want_exits = nchildren;
	want_orphans = nchildren * atoi(norphans);

	/* evm-helper sits next to us in the build directory */
	char helper[PATH_MAX];
	ssize_t k = readlink("/proc/self/exe", helper, sizeof(helper) - 32);
	if (k <= 0) {
		perror("evm-reaper: /proc/self/exe");
		return 2;
	}
	helper[k] = 0;
	strcpy(strrchr(helper, '/') + 1, "evm-helper");

	struct evm_loop *loop;
	struct evm_loop_opts lo = {.flags = EVM_LOOP_REAPER};
	int r = evm_loop_new(&loop, &lo);
	if (r < 0) {
		fprintf(stderr, "evm-reaper: loop: %s\n", strerror(-r));
		return 2;
	}
	int sub = 0;
	prctl(PR_GET_CHILD_SUBREAPER, &sub);
	printf("mode pid1 %s subreaper %s\n", getpid() == 1 ? "yes" : "no", sub ? "yes" : "no");
	evm_subscribe(loop, EVM_EV_ALL, on_event, NULL, NULL);

	char *cargv[] = {helper, "orphans", norphans, "exit", "0", NULL};
	for (int i = 0; i < nchildren; i++) {
		struct evm_spawn_error err = {0};
		struct evm_spawn_opts o = {.argv = cargv, .error = &err};
		r = evm_spawn(loop, &o, NULL);
		if (r < 0) {
			fprintf(stderr, "evm-reaper: spawn %s: %s (%s)\n", helper, strerror(-r),
				evm_spawn_stage_name(err.stage));
			return 2;
		}
	}
	alarm(60);
	r = evm_loop_run(loop);
	/* a moment more: anything reported twice would show up now */
	for (int i = 0; i < 3; i++)
		evm_loop_run_once(loop, 30);
	evm_loop_free(loop);
	int children, zombies;
	count_children(&children, &zombies);
	printf("done exits %d orphans %d children-left %d zombies %d\n", exits, orphans, children,
	       zombies);
	return r < 0 ? 2 : 0;
}
