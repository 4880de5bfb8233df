// cli.h: what the subcommands of the `dalle` program share. Each subcommand
// is one function taking its own argv (argv[0] is its name); it returns the
// process exit status: 0 ok, 1 failure (message printed), 2 usage error.
#pragma once

int cmd_dvae(int argc, char **argv);
int cmd_bpe(int argc, char **argv);
int cmd_info(int argc, char **argv);  // cmd_prior.c
int cmd_masks(int argc, char **argv); // cmd_prior.c
int cmd_shard(int argc, char **argv); // cmd_shard.c
int cmd_train(int argc, char **argv);  // cmd_train.c
int cmd_sample(int argc, char **argv); // cmd_train.c

// Prints "dalle: <the library's last error>" to stderr and returns 1.
int cli_fail(void);
