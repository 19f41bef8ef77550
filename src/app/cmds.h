/* app/cmds: one function per subcommand; argv[0] is the subcommand's name. Returns the exit code. */
#ifndef IG_APP_CMDS_H
#define IG_APP_CMDS_H
#define IG_VERSION "0.1.0"
int ig_cmd_serve(int argc, char **argv);
int ig_cmd_generate(int argc, char **argv);
int ig_cmd_tokenize(int argc, char **argv);
int ig_cmd_template(int argc, char **argv);
int ig_cmd_bench(int argc, char **argv);
#endif
