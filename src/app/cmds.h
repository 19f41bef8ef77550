/* app/cmds: one function per subcommand; argv[0] is the subcommand's name. Returns the exit code. */
#ifndef IG_APP_CMDS_H
#define IG_APP_CMDS_H
#define IG_VERSION "0.1.0"
/* --cuda-graphs' default: decode batch sizes replayed as CUDA graphs (bigger batches are long enough to launch
 * eagerly) */
#define IG_DEFAULT_CUDA_GRAPHS "1,2,4,8,16,32,48,64,96,128,192,256"
int ig_cmd_serve(int argc, char **argv);
int ig_cmd_generate(int argc, char **argv);
int ig_cmd_tokenize(int argc, char **argv);
int ig_cmd_template(int argc, char **argv);
int ig_cmd_bench(int argc, char **argv);
#endif
