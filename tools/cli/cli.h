// cli.h: what the subcommands of the `dalle` program share. Each subcommand
// is one function taking its own argv (argv[0] is its name); it returns the
// process exit status: 0 ok, 1 failure (message printed), 2 usage error.
#pragma once
#include <stdint.h>

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
int cmd_clip(int argc, char **argv);   // cmd_clip.c: the dispatcher of `dalle clip ...`

// tokens.c: a caption's text ids (L) into text, for a model of BPE vocabulary
// Vt: either CAPTION encoded with the tokenizer file TOK (checked against Vt;
// MODEL names the model in that message) or IDS, space-separated ids in
// [0, Vt + L), padded with the padding ids Vt + i. A longer caption is cut
// with a note on stderr naming CMD. DALLE_ERR with the error set.
int cli_caption_ids(const char *cmd, const char *tok, const char *caption, const char *ids, const char *model, int Vt,
                    int L, int32_t *text);
// tokens.c: parses token grids as `dalle dvae encode` writes them (G lines of G
// codes in [0, V) per image, a blank line between images; PATH names the file
// in messages) into *codes (*n_grids * G*G, the caller frees).
int cli_parse_grids(const char *path, const char *text, int G, int V, int32_t **codes, int *n_grids);

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
