// cli.h: what the subcommands of the `dalle` program share. Each subcommand
// is one function taking its own argv (argv[0] is its name); it returns the
// process exit status: 0 ok, 1 failure (message printed), 2 usage error.
#pragma once

int cmd_dvae(int argc, char **argv);
int cmd_bpe(int argc, char **argv);
int cmd_info(int argc, char **argv);  // cmd_prior.c
int cmd_masks(int argc, char **argv); // cmd_prior.c
int cmd_shard(int argc, char **argv); // cmd_shard.c
int cmd_data(int argc, char **argv);   // cmd_data.c: the dispatcher of `dalle data ...`
// The subcommands of `dalle data`, each in its own file (argv[0] is the subcommand's name).
int data_cmd_shapes(int argc, char **argv);       // cmd_data_shapes.c
int data_cmd_shapes_check(int argc, char **argv); // cmd_data_shapes.c
int data_cmd_emoji(int argc, char **argv);        // cmd_data_sources.c
int data_cmd_clipart(int argc, char **argv);      // cmd_data_sources.c
int cmd_generate(int argc, char **argv); // cmd_generate.c
int cmd_serve(int argc, char **argv);    // cmd_serve.c
int cmd_train(int argc, char **argv);  // cmd_train.c
int cmd_sample(int argc, char **argv); // cmd_train.c
int cmd_export(int argc, char **argv); // cmd_train.c
int cmd_diff(int argc, char **argv);   // cmd_diff.c

// Prints "dalle: <the library's last error>" to stderr and returns 1.
int cli_fail(void);

// 1 when the device was chosen on the command line (--device) or by
// $DALLE_DEVICE (main.c selects it before the subcommand runs).
extern int cli_device_given;

// The trainers' ranks (train/comm.h): opens the job's communicator, with the
// ranks other than 0 quiet (errors only, and with --verbose their peak
// memory). NULL after printing the error.
typedef struct comm comm;
comm *cli_comm_open(void);
// Ends a trainer's command: when it failed, prints the error (naming the rank
// when there are several) and, with several ranks, ends the whole job
// (comm_abort) so that no rank waits forever on this one; closes c. Returns
// the exit status (0 or 1).
int cli_comm_finish(comm *c, int failed);
