/*
 * fdreserve.c - descriptors held back for the daemon (see fdreserve.h).
 */
#include "fdreserve.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#define MAX_RESERVE 256

static struct {
	int fd[MAX_RESERVE];
	unsigned n, want;
	int devnull;
} R = {.devnull = -1};

void fdres_stdio(void)
{
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		int n = open("/dev/null", O_RDWR | O_NOCTTY); /* the lowest free number: fd */
		if (n > 2)
			close(n);
	}
}

void fdres_take(void)
{
	while (R.n < R.want) {
		int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return;
		R.fd[R.n++] = fd;
	}
}

void fdres_init(unsigned n)
{
	if (R.devnull < 0)
		R.devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	R.want = n < MAX_RESERVE ? n : MAX_RESERVE;
	fdres_take();
}

bool fdres_give(void)
{
	if (!R.n)
		return false;
	close(R.fd[--R.n]);
	return true;
}

void fdres_free(void)
{
	R.want = 0;
	while (fdres_give())
		;
	if (R.devnull >= 0)
		close(R.devnull);
	R.devnull = -1;
}

unsigned fdres_held(void)
{
	return R.n;
}

unsigned fdres_wanted(void)
{
	return R.want;
}

int fdres_devnull(void)
{
	return R.devnull;
}
