/* io/modeldir: turns a --model-id into a local directory. A local directory is taken as is; `org/name` is
 * looked up in the local Hugging Face cache ($HF_HUB_CACHE, else $HF_HOME/hub, else
 * ~/.cache/huggingface/hub): models--org--name/snapshots/<commit>/, the commit named by --revision (a commit
 * hash, or a branch/tag resolved through refs/<revision>), else by refs/main. Never touches the network. */
#ifndef IG_IO_MODELDIR_H
#define IG_IO_MODELDIR_H
#include <stddef.h>

/* Writes the resolved directory into out. revision may be NULL. Returns 0 or -1 with err filled. */
int ig_modeldir_resolve(const char *model_id, const char *revision, char *out, size_t outlen, char *err,
                        size_t errlen);
/* The hub cache directory that would be searched (for messages and tests). */
void ig_modeldir_hub_cache(char *out, size_t outlen);

#endif
