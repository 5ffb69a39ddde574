/* Restricted unpickler (see pickle.h). Objects live in a pool freed at the end; nothing
 * recurses over the object graph, so cycles and deep nesting cost nothing. */
#include "io/pickle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pxdiff.h"

#define MAX_OBJECTS (1u << 22)
#define MAX_ITEMS (1u << 24)   /* container slots, all containers together */
#define MAX_STACK (1u << 20)
#define MAX_MARKS 10000u
#define MAX_MEMO (1u << 22)
#define MAX_GLOBAL_NAME 200
#define MAX_APPLY_DEPTH 4
#define EXTENT_LIMIT ((int64_t)1 << 62)
#define POOL_CHUNK 1024

enum {
  K_NONE, K_BOOL, K_INT, K_BIGINT, K_FLOAT, K_STR, K_BYTES, K_TUPLE, K_LIST, K_DICT, K_SET,
  K_GLOBAL, K_STORAGE, K_TENSOR, K_OPAQUE
};
static const char *const kind_names[] = {"None",   "bool", "int",     "int", "float",
                                         "str",    "bytes", "tuple",  "list", "dict",
                                         "set",    "global", "storage", "tensor", "object"};

/* ------------------------------------------------------------------ whitelist ---- */
enum {
  G_ODICT = 1, G_REBUILD_V1, G_REBUILD_V2, G_REBUILD_V3, G_REBUILD_PARAM, G_REBUILD_PARAM_STATE,
  G_REBUILD_FROM_TYPE, G_SIZE, G_OPAQUE_CALL, G_STORAGE, G_DTYPE, G_VALUE
};
typedef struct {
  const char *name;
  int gid;
  int dtype; /* G_STORAGE / G_DTYPE: px_dtype or -1 (known but unreadable) */
} gentry;
static const gentry globals_tab[] = {
    {"collections.OrderedDict", G_ODICT, 0},
    {"torch._utils._rebuild_tensor", G_REBUILD_V1, 0},
    {"torch._utils._rebuild_tensor_v2", G_REBUILD_V2, 0},
    {"torch._utils._rebuild_tensor_v3", G_REBUILD_V3, 0},
    {"torch._utils._rebuild_parameter", G_REBUILD_PARAM, 0},
    {"torch._utils._rebuild_parameter_with_state", G_REBUILD_PARAM_STATE, 0},
    {"torch._tensor._rebuild_from_type_v2", G_REBUILD_FROM_TYPE, 0},
    {"torch.Size", G_SIZE, 0},
    /* Harmless constructors whose results pxdiff keeps as opaque values. */
    {"torch.device", G_OPAQUE_CALL, 0},
    {"torch.serialization._get_layout", G_OPAQUE_CALL, 0},
    {"torch.Tensor", G_OPAQUE_CALL, 0},
    {"torch.nn.parameter.Parameter", G_OPAQUE_CALL, 0},
    {"torch._utils._rebuild_qtensor", G_OPAQUE_CALL, 0},
    {"torch._utils._rebuild_sparse_tensor", G_OPAQUE_CALL, 0},
    {"torch._utils._rebuild_sparse_csr_tensor", G_OPAQUE_CALL, 0},
    {"torch._utils._rebuild_meta_tensor_no_storage", G_OPAQUE_CALL, 0},
    {"torch._utils._rebuild_wrapper_subclass", G_OPAQUE_CALL, 0},
    {"torch._utils._rebuild_nested_tensor", G_OPAQUE_CALL, 0},
    {"torch._utils._rebuild_device_tensor_from_numpy", G_OPAQUE_CALL, 0},
    {"torch._utils._rebuild_device_tensor_from_cpu_tensor", G_OPAQUE_CALL, 0},
    {"_codecs.encode", G_OPAQUE_CALL, 0},
    {"builtins.set", G_OPAQUE_CALL, 0},
    {"builtins.frozenset", G_OPAQUE_CALL, 0},
    {"builtins.bytearray", G_OPAQUE_CALL, 0},
    {"builtins.complex", G_OPAQUE_CALL, 0},
    {"builtins.slice", G_OPAQUE_CALL, 0},
    {"builtins.range", G_OPAQUE_CALL, 0},
    {"__builtin__.set", G_OPAQUE_CALL, 0},
    {"__builtin__.frozenset", G_OPAQUE_CALL, 0},
    {"__builtin__.bytearray", G_OPAQUE_CALL, 0},
    {"__builtin__.complex", G_OPAQUE_CALL, 0},
    {"numpy.core.multiarray.scalar", G_OPAQUE_CALL, 0},
    {"numpy.core.multiarray._reconstruct", G_OPAQUE_CALL, 0},
    {"numpy._core.multiarray.scalar", G_OPAQUE_CALL, 0},
    {"numpy._core.multiarray._reconstruct", G_OPAQUE_CALL, 0},
    {"numpy.ndarray", G_OPAQUE_CALL, 0},
    {"numpy.dtype", G_OPAQUE_CALL, 0},
    {"argparse.Namespace", G_OPAQUE_CALL, 0},
    {"pathlib.PosixPath", G_OPAQUE_CALL, 0},
    {"pathlib.PurePosixPath", G_OPAQUE_CALL, 0},
    {"pathlib.WindowsPath", G_OPAQUE_CALL, 0},
    {"datetime.datetime", G_OPAQUE_CALL, 0},
    {"datetime.date", G_OPAQUE_CALL, 0},
    {"datetime.timedelta", G_OPAQUE_CALL, 0},
    /* Storage classes named in persistent ids. */
    {"torch.FloatStorage", G_STORAGE, PX_DT_F32},
    {"torch.HalfStorage", G_STORAGE, PX_DT_F16},
    {"torch.BFloat16Storage", G_STORAGE, PX_DT_BF16},
    {"torch.DoubleStorage", G_STORAGE, PX_DT_F64},
    {"torch.LongStorage", G_STORAGE, PX_DT_I64},
    {"torch.IntStorage", G_STORAGE, PX_DT_I32},
    {"torch.ShortStorage", G_STORAGE, PX_DT_I16},
    {"torch.CharStorage", G_STORAGE, PX_DT_I8},
    {"torch.ByteStorage", G_STORAGE, PX_DT_U8},
    {"torch.BoolStorage", G_STORAGE, PX_DT_BOOL},
    {"torch.UntypedStorage", G_STORAGE, PX_DT_U8},
    {"torch.ComplexFloatStorage", G_STORAGE, -1},
    {"torch.ComplexDoubleStorage", G_STORAGE, -1},
    {"torch.QInt8Storage", G_STORAGE, -1},
    {"torch.QUInt8Storage", G_STORAGE, -1},
    {"torch.QInt32Storage", G_STORAGE, -1},
    {"torch.QUInt4x2Storage", G_STORAGE, -1},
    {"torch.QUInt2x4Storage", G_STORAGE, -1},
    /* dtype objects (torch 2.x pickles torch.float32 etc. by name). */
    {"torch.float32", G_DTYPE, PX_DT_F32},
    {"torch.float16", G_DTYPE, PX_DT_F16},
    {"torch.bfloat16", G_DTYPE, PX_DT_BF16},
    {"torch.float64", G_DTYPE, PX_DT_F64},
    {"torch.int64", G_DTYPE, PX_DT_I64},
    {"torch.int32", G_DTYPE, PX_DT_I32},
    {"torch.int16", G_DTYPE, PX_DT_I16},
    {"torch.int8", G_DTYPE, PX_DT_I8},
    {"torch.uint8", G_DTYPE, PX_DT_U8},
    {"torch.bool", G_DTYPE, PX_DT_BOOL},
    {"torch.complex32", G_DTYPE, -1},
    {"torch.complex64", G_DTYPE, -1},
    {"torch.complex128", G_DTYPE, -1},
    {"torch.uint16", G_DTYPE, -1},
    {"torch.uint32", G_DTYPE, -1},
    {"torch.uint64", G_DTYPE, -1},
    {"torch.float8_e4m3fn", G_DTYPE, -1},
    {"torch.float8_e5m2", G_DTYPE, -1},
    {"torch.float8_e4m3fnuz", G_DTYPE, -1},
    {"torch.float8_e5m2fnuz", G_DTYPE, -1},
    {"torch.qint8", G_DTYPE, -1},
    {"torch.quint8", G_DTYPE, -1},
    {"torch.qint32", G_DTYPE, -1},
    /* Other plain values. */
    {"torch.strided", G_VALUE, 0},
    {"torch.sparse_coo", G_VALUE, 0},
    {"torch.sparse_csr", G_VALUE, 0},
    {"torch.contiguous_format", G_VALUE, 0},
    {"torch.channels_last", G_VALUE, 0},
    {"torch.preserve_format", G_VALUE, 0},
};

/* ------------------------------------------------------------------- objects ---- */
typedef struct pobj pobj;
typedef struct {
  int dtype;            /* px_dtype, or -1 */
  const char *dtname;   /* for messages */
  const char *key;      /* storage key, into the pickle buffer */
  size_t keylen;
  int64_t storage_numel;
  int64_t storage_offset;
  int ndim;
  int64_t shape[PX_MAX_DIMS];
  int64_t stride[PX_MAX_DIMS];
} ptensor;

struct pobj {
  uint8_t kind;
  uint8_t b;            /* K_BOOL value */
  const gentry *g;      /* K_GLOBAL; K_STORAGE: its storage class */
  union {
    int64_t i;
    double f;
    struct {
      const char *p;
      size_t n;
    } s;                /* K_STR, K_BYTES, K_STORAGE key */
    struct {
      pobj **v;
      size_t n, cap;
    } seq;              /* K_TUPLE, K_LIST, K_SET; K_DICT: k0,v0,k1,v1,... */
    ptensor *t;         /* K_TENSOR */
  } u;
  int64_t numel;        /* K_STORAGE */
};

typedef struct {
  const uint8_t *b;
  size_t n, pos, op_at;
  const char *where;
  char *err;
  size_t errlen;
  int rc;
  pobj **chunks;
  size_t nchunks, chunkcap, nobj;
  size_t nitems;
  pobj **stack;
  size_t sp, scap;
  size_t *marks;
  size_t nmarks, mcap;
  pobj **memo;
  size_t memocap, memo_count;
} U;

static int ufail(U *u, int code, const char *fmt, ...) {
  if (u->rc) return u->rc; /* keep the first message */
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (u->err && u->errlen) {
    if (u->op_at == (size_t)-1) snprintf(u->err, u->errlen, "%s: %s", u->where, msg);
    else snprintf(u->err, u->errlen, "%s offset %zu: %s", u->where, u->op_at, msg);
  }
  u->rc = code;
  return code;
}

/* Printable, one-line copy of untrusted bytes for messages. */
static void clean(char *dst, size_t cap, const char *src, size_t n) {
  size_t j = 0;
  for (size_t i = 0; i < n && j + 4 < cap; i++) {
    unsigned char c = (unsigned char)src[i];
    dst[j++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
  }
  if (j + 4 >= cap && n > 0 && j < n) {
    dst[j++] = '.';
    dst[j++] = '.';
    dst[j++] = '.';
  }
  dst[j] = 0;
}

static pobj *newobj(U *u, int kind) {
  if (u->nobj >= MAX_OBJECTS) {
    ufail(u, PX_ERR_FORMAT, "more than %u objects", MAX_OBJECTS);
    return NULL;
  }
  size_t c = u->nobj / POOL_CHUNK, k = u->nobj % POOL_CHUNK;
  if (c >= u->nchunks) {
    if (u->nchunks == u->chunkcap) {
      size_t nc = u->chunkcap ? 2 * u->chunkcap : 16;
      pobj **nn = realloc(u->chunks, nc * sizeof *nn);
      if (!nn) {
        ufail(u, PX_ERR_NOMEM, "out of memory");
        return NULL;
      }
      u->chunks = nn;
      u->chunkcap = nc;
    }
    u->chunks[u->nchunks] = calloc(POOL_CHUNK, sizeof(pobj));
    if (!u->chunks[u->nchunks]) {
      ufail(u, PX_ERR_NOMEM, "out of memory");
      return NULL;
    }
    u->nchunks++;
  }
  pobj *o = &u->chunks[c][k];
  memset(o, 0, sizeof *o);
  o->kind = (uint8_t)kind;
  u->nobj++;
  return o;
}

static void free_pool(U *u) {
  for (size_t i = 0; i < u->nobj; i++) {
    pobj *o = &u->chunks[i / POOL_CHUNK][i % POOL_CHUNK];
    if (o->kind == K_TUPLE || o->kind == K_LIST || o->kind == K_DICT || o->kind == K_SET)
      free(o->u.seq.v);
    else if (o->kind == K_TENSOR)
      free(o->u.t);
  }
  for (size_t c = 0; c < u->nchunks; c++) free(u->chunks[c]);
  free(u->chunks);
  free(u->stack);
  free(u->marks);
  free(u->memo);
}

static int seq_push(U *u, pobj *o, pobj *v) {
  if (o->u.seq.n == o->u.seq.cap) {
    if (u->nitems >= MAX_ITEMS) return ufail(u, PX_ERR_FORMAT, "more than %u container items", MAX_ITEMS);
    size_t nc = o->u.seq.cap ? 2 * o->u.seq.cap : 4;
    if (nc - o->u.seq.cap > MAX_ITEMS - u->nitems) nc = o->u.seq.cap + (MAX_ITEMS - u->nitems);
    pobj **nv = realloc(o->u.seq.v, nc * sizeof *nv);
    if (!nv) return ufail(u, PX_ERR_NOMEM, "out of memory");
    u->nitems += nc - o->u.seq.cap;
    o->u.seq.v = nv;
    o->u.seq.cap = nc;
  }
  o->u.seq.v[o->u.seq.n++] = v;
  return 0;
}

static pobj *new_seq(U *u, int kind, pobj **items, size_t n) {
  pobj *o = newobj(u, kind);
  if (!o) return NULL;
  for (size_t i = 0; i < n; i++)
    if (seq_push(u, o, items[i])) return NULL;
  return o;
}

/* ------------------------------------------------------------------- stack ------ */
static size_t fence(const U *u) { return u->nmarks ? u->marks[u->nmarks - 1] : 0; }

static int push(U *u, pobj *o) {
  if (!o) return u->rc ? u->rc : ufail(u, PX_ERR_FORMAT, "internal: null object");
  if (u->sp == u->scap) {
    if (u->scap >= MAX_STACK) return ufail(u, PX_ERR_FORMAT, "stack deeper than %u", MAX_STACK);
    size_t nc = u->scap ? 2 * u->scap : 64;
    pobj **ns = realloc(u->stack, nc * sizeof *ns);
    if (!ns) return ufail(u, PX_ERR_NOMEM, "out of memory");
    u->stack = ns;
    u->scap = nc;
  }
  u->stack[u->sp++] = o;
  return 0;
}

static pobj *pop(U *u) {
  if (u->sp <= fence(u)) {
    ufail(u, PX_ERR_FORMAT, "stack underflow");
    return NULL;
  }
  return u->stack[--u->sp];
}

static pobj *top(U *u) {
  if (u->sp <= fence(u)) {
    ufail(u, PX_ERR_FORMAT, "stack underflow");
    return NULL;
  }
  return u->stack[u->sp - 1];
}

/* Pops to the last mark; items are stack[*base .. u->sp) until the next push. */
static int pop_mark(U *u, size_t *base) {
  if (!u->nmarks) return ufail(u, PX_ERR_FORMAT, "no MARK on the stack");
  *base = u->marks[--u->nmarks];
  return 0;
}

/* ------------------------------------------------------------------- readers ---- */
static const uint8_t *take(U *u, uint64_t k) {
  if (k > u->n - u->pos) {
    ufail(u, PX_ERR_FORMAT, "truncated: needs %llu bytes, %zu left", (unsigned long long)k,
          u->n - u->pos);
    return NULL;
  }
  const uint8_t *p = u->b + u->pos;
  u->pos += (size_t)k;
  return p;
}
static uint64_t le(const uint8_t *p, int k) {
  uint64_t v = 0;
  for (int i = k - 1; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static int memo_put(U *u, uint64_t idx) {
  pobj *o = top(u);
  if (!o) return u->rc;
  if (idx >= MAX_MEMO) return ufail(u, PX_ERR_FORMAT, "memo index %llu too large", (unsigned long long)idx);
  if (idx >= u->memocap) {
    size_t nc = u->memocap ? u->memocap : 64;
    while (nc <= idx) nc *= 2;
    pobj **nm = realloc(u->memo, nc * sizeof *nm);
    if (!nm) return ufail(u, PX_ERR_NOMEM, "out of memory");
    memset(nm + u->memocap, 0, (nc - u->memocap) * sizeof *nm);
    u->memo = nm;
    u->memocap = nc;
  }
  if (!u->memo[idx]) u->memo_count++;
  u->memo[idx] = o;
  return 0;
}

static int memo_get(U *u, uint64_t idx) {
  if (idx >= u->memocap || !u->memo[idx])
    return ufail(u, PX_ERR_FORMAT, "memo key %llu is missing", (unsigned long long)idx);
  return push(u, u->memo[idx]);
}

static int find_global(U *u, const char *mod, size_t ml, const char *name, size_t nl) {
  char full[2 * MAX_GLOBAL_NAME + 2];
  if (ml > MAX_GLOBAL_NAME || nl > MAX_GLOBAL_NAME) {
    char a[64], b[64];
    clean(a, sizeof a, mod, ml);
    clean(b, sizeof b, name, nl);
    return ufail(u, PX_ERR_FORMAT, "pickle refers to global '%s.%s', which pxdiff does not allow", a, b);
  }
  memcpy(full, mod, ml);
  full[ml] = '.';
  memcpy(full + ml + 1, name, nl);
  full[ml + 1 + nl] = 0;
  int clean_name = memchr(full, 0, ml + 1 + nl) == NULL;
  if (clean_name)
    for (size_t i = 0; i < sizeof globals_tab / sizeof globals_tab[0]; i++)
      if (strcmp(globals_tab[i].name, full) == 0) {
        pobj *o = newobj(u, K_GLOBAL);
        if (!o) return u->rc;
        o->g = &globals_tab[i];
        return push(u, o);
      }
  char shown[2 * MAX_GLOBAL_NAME + 8];
  clean(shown, sizeof shown, full, ml + 1 + nl);
  return ufail(u, PX_ERR_FORMAT, "pickle refers to global '%s', which pxdiff does not allow", shown);
}

/* -------------------------------------------------------------- torch objects ---- */
static int get_int(U *u, pobj *o, const char *what, int64_t *v) {
  if (!o || (o->kind != K_INT && o->kind != K_BOOL))
    return ufail(u, PX_ERR_FORMAT, "%s is a %s, expected an int", what,
                 o ? kind_names[o->kind] : "nothing");
  *v = o->kind == K_INT ? o->u.i : o->b;
  return 0;
}

static int get_dims(U *u, pobj *o, const char *what, int64_t *d, int *nd) {
  if (!o || (o->kind != K_TUPLE && o->kind != K_LIST))
    return ufail(u, PX_ERR_FORMAT, "tensor %s is a %s, expected a tuple", what,
                 o ? kind_names[o->kind] : "nothing");
  if (o->u.seq.n > PX_MAX_DIMS)
    return ufail(u, PX_ERR_FORMAT, "tensor has %zu dimensions (at most %d)", o->u.seq.n, PX_MAX_DIMS);
  *nd = (int)o->u.seq.n;
  for (size_t i = 0; i < o->u.seq.n; i++) {
    if (get_int(u, o->u.seq.v[i], what, &d[i])) return u->rc;
    if (d[i] < 0 || d[i] > EXTENT_LIMIT)
      return ufail(u, PX_ERR_FORMAT, "tensor %s[%zu] = %lld is out of range", what, i, (long long)d[i]);
  }
  return 0;
}

static pobj *make_tensor(U *u, int gid, pobj **a, size_t na) {
  size_t need = gid == G_REBUILD_V1 ? 4 : gid == G_REBUILD_V2 ? 6 : 7;
  if (na < need || na > need + 1) {
    ufail(u, PX_ERR_FORMAT, "tensor rebuild takes %zu arguments, got %zu", need, na);
    return NULL;
  }
  pobj *st = a[0];
  if (st->kind != K_STORAGE) {
    ufail(u, PX_ERR_FORMAT, "tensor rebuild from a %s, expected a storage", kind_names[st->kind]);
    return NULL;
  }
  ptensor *t = calloc(1, sizeof *t);
  if (!t) {
    ufail(u, PX_ERR_NOMEM, "out of memory");
    return NULL;
  }
  pobj *o = newobj(u, K_TENSOR);
  if (!o) {
    free(t);
    return NULL;
  }
  o->u.t = t;
  t->dtype = st->g->dtype;
  t->dtname = st->g->name;
  t->key = st->u.s.p;
  t->keylen = st->u.s.n;
  t->storage_numel = st->numel;
  int nd2 = 0;
  if (get_int(u, a[1], "storage offset", &t->storage_offset) ||
      get_dims(u, a[2], "size", t->shape, &t->ndim) ||
      get_dims(u, a[3], "stride", t->stride, &nd2))
    return NULL;
  if (t->storage_offset < 0 || t->storage_offset > EXTENT_LIMIT) {
    ufail(u, PX_ERR_FORMAT, "storage offset %lld is out of range", (long long)t->storage_offset);
    return NULL;
  }
  if (nd2 != t->ndim) {
    ufail(u, PX_ERR_FORMAT, "tensor has %d sizes but %d strides", t->ndim, nd2);
    return NULL;
  }
  if (gid == G_REBUILD_V3) {
    pobj *d = a[6];
    if (d->kind != K_GLOBAL || d->g->gid != G_DTYPE) {
      ufail(u, PX_ERR_FORMAT, "tensor dtype argument is a %s", kind_names[d->kind]);
      return NULL;
    }
    t->dtype = d->g->dtype;
    t->dtname = d->g->name;
  }
  return o;
}

static pobj *apply(U *u, pobj *f, pobj *args, int depth);

static pobj *persistent_load(U *u, pobj *pid) {
  if (pid->kind != K_TUPLE || pid->u.seq.n != 5) {
    ufail(u, PX_ERR_FORMAT, "persistent id is a %s, expected ('storage', type, key, location, numel)",
          kind_names[pid->kind]);
    return NULL;
  }
  pobj **v = pid->u.seq.v;
  if ((v[0]->kind != K_STR && v[0]->kind != K_BYTES) || v[0]->u.s.n != 7 ||
      memcmp(v[0]->u.s.p, "storage", 7) != 0) {
    ufail(u, PX_ERR_FORMAT, "persistent id is not a storage");
    return NULL;
  }
  if (v[1]->kind != K_GLOBAL || (v[1]->g->gid != G_STORAGE && v[1]->g->gid != G_DTYPE)) {
    ufail(u, PX_ERR_FORMAT, "storage type is a %s, expected a torch storage class",
          kind_names[v[1]->kind]);
    return NULL;
  }
  int key_ok = v[2]->kind == K_STR && v[2]->u.s.n > 0 && v[2]->u.s.n <= 64;
  for (size_t i = 0; key_ok && i < v[2]->u.s.n; i++) {
    unsigned char c = (unsigned char)v[2]->u.s.p[i];
    key_ok = c > 0x20 && c < 0x7f && c != '/';
  }
  if (!key_ok) {
    ufail(u, PX_ERR_FORMAT, "bad storage key");
    return NULL;
  }
  int64_t numel = 0;
  if (get_int(u, v[4], "storage size", &numel)) return NULL;
  if (numel < 0 || numel > EXTENT_LIMIT) {
    ufail(u, PX_ERR_FORMAT, "storage size %lld is out of range", (long long)numel);
    return NULL;
  }
  pobj *o = newobj(u, K_STORAGE);
  if (!o) return NULL;
  o->g = v[1]->g;
  o->u.s.p = v[2]->u.s.p;
  o->u.s.n = v[2]->u.s.n;
  o->numel = numel;
  return o;
}

static pobj *apply(U *u, pobj *f, pobj *args, int depth) {
  if (depth > MAX_APPLY_DEPTH) {
    ufail(u, PX_ERR_FORMAT, "rebuild calls nested too deeply");
    return NULL;
  }
  if (f->kind != K_GLOBAL) {
    ufail(u, PX_ERR_FORMAT, "REDUCE calls a %s", kind_names[f->kind]);
    return NULL;
  }
  if (args->kind != K_TUPLE) {
    ufail(u, PX_ERR_FORMAT, "REDUCE arguments are a %s, expected a tuple", kind_names[args->kind]);
    return NULL;
  }
  pobj **a = args->u.seq.v;
  size_t na = args->u.seq.n;
  switch (f->g->gid) {
  case G_ODICT: {
    pobj *d = newobj(u, K_DICT);
    if (!d) return NULL;
    if (na == 0) return d;
    if (na == 1 && (a[0]->kind == K_LIST || a[0]->kind == K_TUPLE)) {
      for (size_t i = 0; i < a[0]->u.seq.n; i++) {
        pobj *p = a[0]->u.seq.v[i];
        if ((p->kind != K_TUPLE && p->kind != K_LIST) || p->u.seq.n != 2) {
          ufail(u, PX_ERR_FORMAT, "OrderedDict item is not a pair");
          return NULL;
        }
        if (seq_push(u, d, p->u.seq.v[0]) || seq_push(u, d, p->u.seq.v[1])) return NULL;
      }
      return d;
    }
    if (na == 1 && a[0]->kind == K_DICT) {
      for (size_t i = 0; i < a[0]->u.seq.n; i++)
        if (seq_push(u, d, a[0]->u.seq.v[i])) return NULL;
      return d;
    }
    ufail(u, PX_ERR_FORMAT, "unexpected OrderedDict arguments");
    return NULL;
  }
  case G_REBUILD_V1:
  case G_REBUILD_V2:
  case G_REBUILD_V3:
    return make_tensor(u, f->g->gid, a, na);
  case G_REBUILD_PARAM:
  case G_REBUILD_PARAM_STATE:
    if (na != (f->g->gid == G_REBUILD_PARAM ? 3u : 4u)) {
      ufail(u, PX_ERR_FORMAT, "%s takes %d arguments, got %zu", f->g->name,
            f->g->gid == G_REBUILD_PARAM ? 3 : 4, na);
      return NULL;
    }
    return a[0]; /* the parameter is its data tensor (or whatever object that was) */
  case G_REBUILD_FROM_TYPE:
    if (na != 4 || a[1]->kind != K_GLOBAL) {
      ufail(u, PX_ERR_FORMAT, "unexpected _rebuild_from_type_v2 arguments");
      return NULL;
    }
    return apply(u, a[0], a[2], depth + 1);
  case G_SIZE:
    if (na == 1 && (a[0]->kind == K_TUPLE || a[0]->kind == K_LIST))
      return new_seq(u, K_TUPLE, a[0]->u.seq.v, a[0]->u.seq.n);
    ufail(u, PX_ERR_FORMAT, "unexpected torch.Size arguments");
    return NULL;
  case G_OPAQUE_CALL:
    return newobj(u, K_OPAQUE);
  default:
    ufail(u, PX_ERR_FORMAT, "pickle calls '%s', which is not a callable pxdiff allows", f->g->name);
    return NULL;
  }
}

static pobj *new_instance(U *u, pobj *cls) {
  if (cls->kind != K_GLOBAL) {
    ufail(u, PX_ERR_FORMAT, "NEWOBJ on a %s", kind_names[cls->kind]);
    return NULL;
  }
  if (cls->g->gid == G_ODICT) return newobj(u, K_DICT);
  if (cls->g->gid == G_OPAQUE_CALL) return newobj(u, K_OPAQUE);
  ufail(u, PX_ERR_FORMAT, "pickle instantiates '%s', which pxdiff does not allow", cls->g->name);
  return NULL;
}

/* ------------------------------------------------------------------- main loop ---- */
static pobj *scalar(U *u, int kind) { return newobj(u, kind); }

static int push_str(U *u, int kind, uint64_t len) {
  const uint8_t *p = take(u, len);
  if (!p) return u->rc;
  pobj *o = newobj(u, kind);
  if (!o) return u->rc;
  o->u.s.p = (const char *)p;
  o->u.s.n = (size_t)len;
  return push(u, o);
}

static int push_long(U *u, uint64_t len) {
  const uint8_t *p = take(u, len);
  if (!p) return u->rc;
  pobj *o;
  if (len <= 8) {
    o = newobj(u, K_INT);
    if (!o) return u->rc;
    uint64_t v = len ? le(p, (int)len) : 0;
    if (len && len < 8 && (p[len - 1] & 0x80)) v |= ~(uint64_t)0 << (8 * len);
    o->u.i = (int64_t)v;
  } else {
    o = newobj(u, K_BIGINT);
    if (!o) return u->rc;
  }
  return push(u, o);
}

static int read_line(U *u, const char **s, size_t *l) {
  size_t start = u->pos;
  const uint8_t *nl = memchr(u->b + start, '\n', u->n - start);
  if (!nl) return ufail(u, PX_ERR_FORMAT, "truncated: unterminated line");
  *s = (const char *)u->b + start;
  *l = (size_t)(nl - (u->b + start));
  u->pos = (size_t)(nl - u->b) + 1;
  return 0;
}

static pobj *run(U *u) {
  for (;;) {
    if (u->rc) return NULL;
    u->op_at = u->pos;
    const uint8_t *opp = take(u, 1);
    if (!opp) return NULL;
    uint8_t op = *opp;
    const uint8_t *p;
    pobj *o, *a, *b;
    size_t base = 0;
    switch (op) {
    case 0x80: /* PROTO */
      if (!(p = take(u, 1))) return NULL;
      if (*p > 5) ufail(u, PX_ERR_FORMAT, "unsupported pickle protocol %d", *p);
      break;
    case 0x95: /* FRAME */
      if (!(p = take(u, 8))) return NULL;
      break;
    case '.': /* STOP */
      o = pop(u);
      if (!o) return NULL;
      if (u->sp || u->nmarks) {
        ufail(u, PX_ERR_FORMAT, "%zu objects and %zu marks left on the stack at STOP", u->sp, u->nmarks);
        return NULL;
      }
      return o;
    case 'N': push(u, scalar(u, K_NONE)); break;
    case 0x88: case 0x89: /* NEWTRUE, NEWFALSE */
      if ((o = scalar(u, K_BOOL))) o->b = op == 0x88;
      push(u, o);
      break;
    case 'J': /* BININT */
      if (!(p = take(u, 4))) return NULL;
      if ((o = scalar(u, K_INT))) o->u.i = (int32_t)(uint32_t)le(p, 4);
      push(u, o);
      break;
    case 'K': case 'M': /* BININT1, BININT2 */
      if (!(p = take(u, op == 'K' ? 1 : 2))) return NULL;
      if ((o = scalar(u, K_INT))) o->u.i = (int64_t)le(p, op == 'K' ? 1 : 2);
      push(u, o);
      break;
    case 0x8a: /* LONG1 */
      if (!(p = take(u, 1))) return NULL;
      push_long(u, *p);
      break;
    case 0x8b: { /* LONG4 */
      if (!(p = take(u, 4))) return NULL;
      int32_t len = (int32_t)(uint32_t)le(p, 4);
      if (len < 0) return ufail(u, PX_ERR_FORMAT, "negative LONG4 length"), NULL;
      push_long(u, (uint64_t)len);
      break;
    }
    case 'G': /* BINFLOAT, big-endian */
      if (!(p = take(u, 8))) return NULL;
      if ((o = scalar(u, K_FLOAT))) {
        uint64_t bits = 0;
        for (int i = 0; i < 8; i++) bits = (bits << 8) | p[i];
        memcpy(&o->u.f, &bits, 8);
      }
      push(u, o);
      break;
    case 'X': case 'B': case 'T': /* BINUNICODE, BINBYTES, BINSTRING: u32 length */
      if (!(p = take(u, 4))) return NULL;
      if (op == 'T' && (p[3] & 0x80)) return ufail(u, PX_ERR_FORMAT, "negative string length"), NULL;
      push_str(u, op == 'B' ? K_BYTES : K_STR, le(p, 4));
      break;
    case 0x8c: case 'C': case 'U': /* SHORT_BINUNICODE, SHORT_BINBYTES, SHORT_BINSTRING */
      if (!(p = take(u, 1))) return NULL;
      push_str(u, op == 'C' ? K_BYTES : K_STR, *p);
      break;
    case 0x8d: case 0x8e: case 0x96: /* BINUNICODE8, BINBYTES8, BYTEARRAY8 */
      if (!(p = take(u, 8))) return NULL;
      push_str(u, op == 0x8d ? K_STR : K_BYTES, le(p, 8));
      break;
    case '}': push(u, newobj(u, K_DICT)); break;
    case ']': push(u, newobj(u, K_LIST)); break;
    case ')': push(u, newobj(u, K_TUPLE)); break;
    case 0x8f: push(u, newobj(u, K_SET)); break;
    case '(': /* MARK */
      if (u->nmarks >= MAX_MARKS) return ufail(u, PX_ERR_FORMAT, "more than %u nested MARKs", MAX_MARKS), NULL;
      if (u->nmarks == u->mcap) {
        size_t nc = u->mcap ? 2 * u->mcap : 32;
        size_t *nm = realloc(u->marks, nc * sizeof *nm);
        if (!nm) return ufail(u, PX_ERR_NOMEM, "out of memory"), NULL;
        u->marks = nm;
        u->mcap = nc;
      }
      u->marks[u->nmarks++] = u->sp;
      break;
    case 't': case 'l': case 0x91: /* TUPLE, LIST, FROZENSET */
      if (pop_mark(u, &base)) return NULL;
      o = new_seq(u, op == 't' ? K_TUPLE : op == 'l' ? K_LIST : K_SET, u->stack + base, u->sp - base);
      u->sp = base;
      push(u, o);
      break;
    case 'd': /* DICT */
      if (pop_mark(u, &base)) return NULL;
      if ((u->sp - base) % 2) return ufail(u, PX_ERR_FORMAT, "DICT with an odd number of items"), NULL;
      o = new_seq(u, K_DICT, u->stack + base, u->sp - base);
      u->sp = base;
      push(u, o);
      break;
    case 0x85: case 0x86: case 0x87: { /* TUPLE1..3 */
      size_t k = (size_t)(op - 0x84);
      if (u->sp < fence(u) + k) return ufail(u, PX_ERR_FORMAT, "stack underflow"), NULL;
      o = new_seq(u, K_TUPLE, u->stack + u->sp - k, k);
      u->sp -= k;
      push(u, o);
      break;
    }
    case 'a': /* APPEND */
      if (!(b = pop(u)) || !(a = top(u))) return NULL;
      if (a->kind == K_LIST || a->kind == K_SET) seq_push(u, a, b);
      else if (a->kind != K_OPAQUE) ufail(u, PX_ERR_FORMAT, "APPEND to a %s", kind_names[a->kind]);
      break;
    case 'e': case 0x90: /* APPENDS, ADDITEMS */
      if (pop_mark(u, &base)) return NULL;
      if (base <= fence(u)) return ufail(u, PX_ERR_FORMAT, "stack underflow"), NULL;
      a = u->stack[base - 1];
      if (a->kind == K_LIST || a->kind == K_SET) {
        for (size_t i = base; i < u->sp && !u->rc; i++) seq_push(u, a, u->stack[i]);
      } else if (a->kind != K_OPAQUE) {
        ufail(u, PX_ERR_FORMAT, "APPENDS to a %s", kind_names[a->kind]);
      }
      u->sp = base;
      break;
    case 's': /* SETITEM */
      if (!(b = pop(u)) || !(a = pop(u)) || !(o = top(u))) return NULL;
      if (o->kind == K_DICT) {
        if (!seq_push(u, o, a)) seq_push(u, o, b);
      } else if (o->kind != K_OPAQUE) {
        ufail(u, PX_ERR_FORMAT, "SETITEM on a %s", kind_names[o->kind]);
      }
      break;
    case 'u': /* SETITEMS */
      if (pop_mark(u, &base)) return NULL;
      if (base <= fence(u)) return ufail(u, PX_ERR_FORMAT, "stack underflow"), NULL;
      o = u->stack[base - 1];
      if ((u->sp - base) % 2) ufail(u, PX_ERR_FORMAT, "SETITEMS with an odd number of items");
      else if (o->kind == K_DICT)
        for (size_t i = base; i < u->sp && !u->rc; i++) seq_push(u, o, u->stack[i]);
      else if (o->kind != K_OPAQUE)
        ufail(u, PX_ERR_FORMAT, "SETITEMS on a %s", kind_names[o->kind]);
      u->sp = base;
      break;
    case 'q': /* BINPUT */
      if (!(p = take(u, 1))) return NULL;
      memo_put(u, *p);
      break;
    case 'r': /* LONG_BINPUT */
      if (!(p = take(u, 4))) return NULL;
      memo_put(u, le(p, 4));
      break;
    case 0x94: /* MEMOIZE */
      memo_put(u, u->memo_count);
      break;
    case 'h': /* BINGET */
      if (!(p = take(u, 1))) return NULL;
      memo_get(u, *p);
      break;
    case 'j': /* LONG_BINGET */
      if (!(p = take(u, 4))) return NULL;
      memo_get(u, le(p, 4));
      break;
    case '0': /* POP */
      if (u->sp > fence(u)) u->sp--;
      else if (u->nmarks) u->nmarks--;
      else ufail(u, PX_ERR_FORMAT, "stack underflow");
      break;
    case '1': /* POP_MARK */
      if (pop_mark(u, &base)) return NULL;
      u->sp = base;
      break;
    case '2': /* DUP */
      if (!(o = top(u))) return NULL;
      push(u, o);
      break;
    case 'c': { /* GLOBAL */
      const char *m = NULL, *n = NULL;
      size_t ml = 0, nl = 0;
      if (read_line(u, &m, &ml) || read_line(u, &n, &nl)) return NULL;
      find_global(u, m, ml, n, nl);
      break;
    }
    case 0x93: /* STACK_GLOBAL */
      if (!(b = pop(u)) || !(a = pop(u))) return NULL;
      if (a->kind != K_STR || b->kind != K_STR)
        return ufail(u, PX_ERR_FORMAT, "STACK_GLOBAL needs two strings"), NULL;
      find_global(u, a->u.s.p, a->u.s.n, b->u.s.p, b->u.s.n);
      break;
    case 'R': /* REDUCE */
      if (!(b = pop(u)) || !(a = pop(u))) return NULL;
      push(u, apply(u, a, b, 0));
      break;
    case 0x81: /* NEWOBJ */
      if (!(b = pop(u)) || !(a = pop(u))) return NULL;
      push(u, new_instance(u, a));
      break;
    case 0x92: /* NEWOBJ_EX */
      if (!pop(u) || !pop(u) || !(a = pop(u))) return NULL;
      push(u, new_instance(u, a));
      break;
    case 'b': /* BUILD: state is dropped, the object stays as it is */
      if (!pop(u) || !top(u)) return NULL;
      break;
    case 'Q': /* BINPERSID */
      if (!(a = pop(u))) return NULL;
      push(u, persistent_load(u, a));
      break;
    default:
      if (op >= 0x20 && op < 0x7f)
        ufail(u, PX_ERR_FORMAT, "unsupported pickle opcode '%c' (0x%02x)", op, op);
      else
        ufail(u, PX_ERR_FORMAT, "unsupported pickle opcode 0x%02x", op);
      return NULL;
    }
  }
}

/* -------------------------------------------------------------------- flatten ---- */
typedef struct {
  pobj *key, *val;
  size_t pos;
} kv;

static int cmp_kv(const void *x, const void *y) {
  const kv *a = x, *b = y;
  size_t n = a->key->u.s.n < b->key->u.s.n ? a->key->u.s.n : b->key->u.s.n;
  int c = memcmp(a->key->u.s.p, b->key->u.s.p, n);
  if (c) return c;
  if (a->key->u.s.n != b->key->u.s.n) return a->key->u.s.n < b->key->u.s.n ? -1 : 1;
  return a->pos < b->pos ? -1 : a->pos > b->pos;
}
static int cmp_pos(const void *x, const void *y) {
  const kv *a = x, *b = y;
  return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static int str_is(const pobj *o, const char *s) {
  size_t l = strlen(s);
  return o->kind == K_STR && o->u.s.n == l && memcmp(o->u.s.p, s, l) == 0;
}

int px_pickle_index(const uint8_t *buf, size_t n, const char *where, px_pickle_storage_fn fn,
                    void *ctx, px_tensor_entry **out, int *nout, char *err, size_t errlen) {
  U u;
  memset(&u, 0, sizeof u);
  u.b = buf;
  u.n = n;
  u.where = where;
  u.err = err;
  u.errlen = errlen;
  *out = NULL;
  *nout = 0;
  kv *list = NULL;
  px_tensor_entry *ents = NULL;
  int nent = 0;
  pobj *root = run(&u);
  if (!root) {
    if (!u.rc) ufail(&u, PX_ERR_FORMAT, "no result");
    goto done;
  }
  u.op_at = (size_t)-1; /* errors below concern the result, not one opcode */
  if (root->kind != K_DICT) {
    ufail(&u, PX_ERR_FORMAT, "top-level object is a %s, expected a dict of tensors",
          kind_names[root->kind]);
    goto done;
  }
  pobj *src = root;
  for (size_t i = 0; i + 1 < root->u.seq.n; i += 2)
    if (str_is(root->u.seq.v[i], "model") && root->u.seq.v[i + 1]->kind == K_DICT)
      src = root->u.seq.v[i + 1];
    else if (str_is(root->u.seq.v[i], "model"))
      src = root;
  size_t np = src->u.seq.n / 2, nl = 0;
  list = malloc((np ? np : 1) * sizeof *list);
  if (!list) {
    ufail(&u, PX_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (size_t i = 0; i < np; i++) {
    pobj *k = src->u.seq.v[2 * i], *v = src->u.seq.v[2 * i + 1];
    if (k->kind != K_STR || v->kind != K_TENSOR) continue;
    list[nl].key = k;
    list[nl].val = v;
    list[nl].pos = i;
    nl++;
  }
  /* A repeated key keeps its last value, as a Python dict would. */
  qsort(list, nl, sizeof *list, cmp_kv);
  size_t m = 0;
  for (size_t i = 0; i < nl; i++) {
    if (i + 1 < nl && list[i + 1].key->u.s.n == list[i].key->u.s.n &&
        memcmp(list[i + 1].key->u.s.p, list[i].key->u.s.p, list[i].key->u.s.n) == 0)
      continue;
    list[m++] = list[i];
  }
  qsort(list, m, sizeof *list, cmp_pos);
  ents = calloc(m ? m : 1, sizeof *ents);
  if (!ents) {
    ufail(&u, PX_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (size_t i = 0; i < m; i++) {
    pobj *k = list[i].key;
    ptensor *t = list[i].val->u.t;
    char shown[160];
    clean(shown, sizeof shown, k->u.s.p, k->u.s.n);
    if (memchr(k->u.s.p, 0, k->u.s.n)) {
      ufail(&u, PX_ERR_FORMAT, "tensor name '%s' holds a NUL byte", shown);
      goto done;
    }
    if (t->dtype < 0) {
      ufail(&u, PX_ERR_FORMAT, "tensor '%s' has type %s, which pxdiff cannot read", shown, t->dtname);
      goto done;
    }
    uint64_t es = px_dtype_size((px_dtype)t->dtype);
    int64_t extent = 1, numel = 1;
    for (int d = 0; d < t->ndim; d++) numel = t->shape[d] == 0 ? 0 : numel;
    for (int d = 0; d < t->ndim && numel; d++) {
      if (t->shape[d] > EXTENT_LIMIT / numel) {
        ufail(&u, PX_ERR_FORMAT, "tensor '%s' has more than 2^62 elements", shown);
        goto done;
      }
      numel *= t->shape[d];
    }
    if (numel == 0) {
      extent = 0;
    } else {
      for (int d = 0; d < t->ndim; d++) {
        int64_t s1 = t->shape[d] - 1, st = t->stride[d];
        if (s1 > 0 && st > (EXTENT_LIMIT - extent) / s1) {
          ufail(&u, PX_ERR_FORMAT, "tensor '%s': shape and strides reach past 2^62 elements", shown);
          goto done;
        }
        extent += s1 * st;
      }
    }
    if (extent > t->storage_numel - t->storage_offset || t->storage_offset > t->storage_numel) {
      ufail(&u, PX_ERR_FORMAT,
            "tensor '%s' needs elements [%lld, %lld) of a storage of %lld elements", shown,
            (long long)t->storage_offset, (long long)(t->storage_offset + extent),
            (long long)t->storage_numel);
      goto done;
    }
    char key[80];
    memcpy(key, t->key, t->keylen);
    key[t->keylen] = 0;
    uint64_t off = 0, nbytes = 0;
    int rc = fn(ctx, key, &off, &nbytes, err, errlen);
    if (rc) {
      u.rc = rc;
      goto done;
    }
    uint64_t need_el = (uint64_t)(t->storage_offset + extent);
    if (need_el > nbytes / es) {
      ufail(&u, PX_ERR_FORMAT,
            "tensor '%s' needs %llu elements of %llu bytes from storage %s, which holds %llu bytes",
            shown, (unsigned long long)need_el, (unsigned long long)es, key,
            (unsigned long long)nbytes);
      goto done;
    }
    px_tensor_entry *e = &ents[nent];
    e->name = malloc(k->u.s.n + 1);
    if (!e->name) {
      ufail(&u, PX_ERR_NOMEM, "out of memory");
      goto done;
    }
    memcpy(e->name, k->u.s.p, k->u.s.n);
    e->name[k->u.s.n] = 0;
    nent++;
    e->dtype = (px_dtype)t->dtype;
    e->ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) {
      e->shape[d] = t->shape[d];
      e->stride[d] = t->stride[d];
    }
    e->offset = off + (uint64_t)t->storage_offset * es;
    e->span = (uint64_t)extent * es;
  }
done:
  free(list);
  free_pool(&u);
  if (u.rc) {
    for (int i = 0; i < nent; i++) free(ents[i].name);
    free(ents);
    return u.rc;
  }
  *out = ents;
  *nout = nent;
  return 0;
}
