/* One dtype's micro-kernels (T, VT, IDX, V, KN, VFMA, SFMA and maybe VSTOREN defined by
 * isa_section.h): the vector helpers they share, then the templates; undefines them after. */
#if V == 16
#define BCAST(s) ((VT){(s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s), (s)})
#define GATHER(p, st) ((VT){(p)[0], (p)[(st)], (p)[2 * (st)], (p)[3 * (st)], (p)[4 * (st)], \
                            (p)[5 * (st)], (p)[6 * (st)], (p)[7 * (st)], (p)[8 * (st)],       \
                            (p)[9 * (st)], (p)[10 * (st)], (p)[11 * (st)], (p)[12 * (st)],    \
                            (p)[13 * (st)], (p)[14 * (st)], (p)[15 * (st)]})
#elif V == 8
#define BCAST(s) ((VT){(s), (s), (s), (s), (s), (s), (s), (s)})
#define GATHER(p, st) ((VT){(p)[0], (p)[(st)], (p)[2 * (st)], (p)[3 * (st)], (p)[4 * (st)], \
                            (p)[5 * (st)], (p)[6 * (st)], (p)[7 * (st)]})
#elif V == 4
#define BCAST(s) ((VT){(s), (s), (s), (s)})
#define GATHER(p, st) ((VT){(p)[0], (p)[(st)], (p)[2 * (st)], (p)[3 * (st)]})
#elif V == 2
#define BCAST(s) ((VT){(s), (s)})
#define GATHER(p, st) ((VT){(p)[0], (p)[(st)]})
#else
#error "unsupported lane count"
#endif
#if defined(__clang__)
#define C3_SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define C3_SHUF(a, b, ...) __builtin_shuffle(a, b, (IDX){__VA_ARGS__})
#endif
#include "direct_tmpl.h"
#include "winograd_tmpl.h"
#undef BCAST
#undef GATHER
#undef C3_SHUF
#undef T
#undef VT
#undef IDX
#undef V
#undef KN
#undef VFMA
#undef SFMA
#undef VSTOREN
