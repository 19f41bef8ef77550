/* io/modeldir: see modeldir.h. Mirrors huggingface_hub's cache layout (models--org--name/{refs,snapshots}). */
#include "io/modeldir.h"
#include "util/file.h"
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ig_modeldir_hub_cache(char *out, size_t outlen) {
  const char *v = getenv("HF_HUB_CACHE");
  if (!v || !*v) v = getenv("HUGGINGFACE_HUB_CACHE");
  if (v && *v) {
    snprintf(out, outlen, "%s", v);
    return;
  }
  const char *home = getenv("HF_HOME");
  if (home && *home) {
    snprintf(out, outlen, "%s/hub", home);
    return;
  }
  const char *xdg = getenv("XDG_CACHE_HOME");
  if (xdg && *xdg) {
    snprintf(out, outlen, "%s/huggingface/hub", xdg);
    return;
  }
  const char *h = getenv("HOME");
  snprintf(out, outlen, "%s/.cache/huggingface/hub", h && *h ? h : ".");
}

/* A repo id is `name` or `org/name` of [A-Za-z0-9._-], no "..". */
static int valid_repo_id(const char *id) {
  int slashes = 0;
  if (!*id || *id == '.' || *id == '/' || strstr(id, "..")) return 0;
  for (const char *p = id; *p; p++) {
    if (*p == '/') {
      if (++slashes > 1 || p[1] == 0) return 0;
    } else if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                 *p == '_' || *p == '.')) {
      return 0;
    }
  }
  return 1;
}

static int valid_ref(const char *r) {
  if (!*r || strstr(r, "..") || *r == '/') return 0;
  return 1;
}

/* Reads refs/<name> (a commit hash on one line) into out. */
static int read_ref(const char *repo, const char *name, char *out, size_t outlen) {
  char path[4096 + 512], e[256], *txt = NULL;
  size_t len;
  snprintf(path, sizeof path, "%s/refs/%s", repo, name);
  if (!ig_file_exists(path) || ig_file_read(path, 4096, &txt, &len, e, sizeof e)) return -1;
  while (len && (txt[len - 1] == '\n' || txt[len - 1] == '\r' || txt[len - 1] == ' ')) txt[--len] = 0;
  int ok = len > 0 && !strchr(txt, '/');
  if (ok) snprintf(out, outlen, "%s", txt);
  free(txt);
  return ok ? 0 : -1;
}

int ig_modeldir_resolve(const char *model_id, const char *revision, char *out, size_t outlen, char *err,
                        size_t errlen) {
  if (ig_dir_exists(model_id)) {
    snprintf(out, outlen, "%s", model_id);
    return 0;
  }
  char hub[3072];
  ig_modeldir_hub_cache(hub, sizeof hub);
  if (!valid_repo_id(model_id)) {
    snprintf(err, errlen, "model '%s' not found: not a directory (and not an org/name id)", model_id);
    return -1;
  }
  char repo[4096];
  int n = snprintf(repo, sizeof repo, "%s/models--", hub);
  for (const char *p = model_id; *p && n < (int)sizeof repo - 3; p++) {
    if (*p == '/') {
      repo[n++] = '-';
      repo[n++] = '-';
    } else {
      repo[n++] = *p;
    }
  }
  repo[n] = 0;
  if (!ig_dir_exists(repo)) {
    snprintf(err, errlen, "model '%s' not found: not a local directory and not in the Hugging Face cache (%s); "
             "no network access", model_id, hub);
    return -1;
  }
  if (revision && !valid_ref(revision)) {
    snprintf(err, errlen, "bad --revision '%s'", revision);
    return -1;
  }
  char commit[256], path[4096 + 300];
  const char *rev = revision ? revision : "main";
  snprintf(path, sizeof path, "%s/snapshots/%s", repo, rev);
  if (revision && ig_dir_exists(path)) {
    snprintf(out, outlen, "%s", path);
    return 0;
  }
  if (read_ref(repo, rev, commit, sizeof commit) == 0) {
    snprintf(path, sizeof path, "%s/snapshots/%s", repo, commit);
    if (ig_dir_exists(path)) {
      snprintf(out, outlen, "%s", path);
      return 0;
    }
    snprintf(err, errlen, "model '%s': refs/%s names %s but that snapshot is not in the cache", model_id, rev, commit);
    return -1;
  }
  if (revision) {
    snprintf(err, errlen, "model '%s': revision '%s' is not in the cache (%s)", model_id, revision, repo);
    return -1;
  }
  /* No refs/main: accept the snapshot if there is exactly one. */
  snprintf(path, sizeof path, "%s/snapshots", repo);
  DIR *d = opendir(path);
  int count = 0;
  char only[256] = "";
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.') continue;
      count++;
      snprintf(only, sizeof only, "%s", e->d_name);
    }
    closedir(d);
  }
  if (count == 1) {
    snprintf(out, outlen, "%s/%s", path, only);
    return 0;
  }
  snprintf(err, errlen, "model '%s': no refs/main in %s and %d snapshots; pick one with --revision", model_id, repo,
           count);
  return -1;
}
