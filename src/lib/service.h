/*
 * service.h - what supervise.c (the state machine) shares with its table's
 * test: the events a service reacts to and the state x event table.
 *
 * Every change of a service's state is one cell of evm__sv_table, run by
 * evm__sv_dispatch; supervise.c's header shows the table as text.
 */
#ifndef EVM_SERVICE_H
#define EVM_SERVICE_H

#include "internal.h"

/* what can happen to a service: a column of the table each */
enum evm__sv_event {
	EVM__SV_START,	      /* evm_service_start */
	EVM__SV_STOP,	      /* evm_service_stop; evm_shutdown */
	EVM__SV_RESTART,      /* evm_service_restart */
	EVM__SV_REMOVE,	      /* evm_service_remove */
	EVM__SV_SPAWN_FAILED, /* a start could not spawn the process (arg: error) */
	EVM__SV_EXIT,	      /* the process exited (arg: exit) */
	EVM__SV_GRACE,	      /* start_ms elapsed: the start succeeded */
	EVM__SV_BACKOFF_DONE, /* the backoff elapsed: start again */
	EVM__SV_STOP_TIMEOUT, /* stop_timeout elapsed: SIGKILL */
	EVM__SV_NEVENTS
};

/* a row each: the last enum evm_state + 1 */
#define EVM__SV_NSTATES (EVM_STATE_FATAL + 1)
/* in a cell's targets, besides the states: the service is removed (freed) */
#define EVM__SV_REMOVED EVM__SV_NSTATES
#define EVM__SV_TO(st) (1u << (st))

struct evm__sv_arg {
	const struct evm_exit *exit;
	int error;
};

/*
 * One (state, event) cell: act does the work and enters one of the states
 * in `to` (0: the service stays where it is). A cell with no act ignores the
 * event; `what` says in a few words what the cell does (the table's text).
 */
struct evm__sv_cell {
	int (*act)(struct evm_service *s, const struct evm__sv_arg *a);
	unsigned to;
	const char *what;
};

EVM_HIDDEN extern const struct evm__sv_cell evm__sv_table[EVM__SV_NSTATES][EVM__SV_NEVENTS];
EVM_HIDDEN extern const char *const evm__sv_event_names[EVM__SV_NEVENTS];
/* transitions no cell allowed (a bug in the table or an action): tests check it stays 0 */
EVM_HIDDEN extern unsigned long evm__sv_off_table;

/* the one way an event reaches a service; a = NULL for none */
EVM_HIDDEN int evm__sv_dispatch(struct evm_service *s, enum evm__sv_event ev,
				const struct evm__sv_arg *a);

#endif
