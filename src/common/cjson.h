/*
 * cjson.h - cJSON for the daemon and ctl, opened at run time (dlopen), not
 * linked: `evmon init` runs from the same binary and never parses JSON, and a
 * library in DT_NEEDED is loaded, relocated and mapped at every start of it
 * (docs/INIT.md, "Footprint"). Include this, not <cjson/cJSON.h>: each cJSON
 * function used is a macro for the pointer of the same name in cjson_fn,
 * filled by cjson_open() (main.c, before `evmon daemon` and `evmon ctl` run;
 * a use before it opens the library then, or exits if it cannot).
 */
#ifndef EVMON_CJSON_H
#define EVMON_CJSON_H

#include <cjson/cJSON.h>
#include <stddef.h>

/* the cJSON functions evmon uses: one more here, and one more #define below */
#define CJSON_FUNCS(X)                                                                             \
	X(cJSON_AddArrayToObject) X(cJSON_AddBoolToObject) X(cJSON_AddFalseToObject)               \
	X(cJSON_AddItemToArray) X(cJSON_AddItemToObject) X(cJSON_AddNullToObject)                  \
	X(cJSON_AddNumberToObject) X(cJSON_AddObjectToObject) X(cJSON_AddStringToObject)           \
	X(cJSON_AddTrueToObject) X(cJSON_CreateArray) X(cJSON_CreateObject) X(cJSON_CreateString)  \
	X(cJSON_CreateStringArray) X(cJSON_Delete) X(cJSON_DeleteItemFromObjectCaseSensitive)      \
	X(cJSON_Duplicate) X(cJSON_GetArrayItem) X(cJSON_GetArraySize) X(cJSON_GetErrorPtr)        \
	X(cJSON_GetObjectItem) X(cJSON_GetObjectItemCaseSensitive) X(cJSON_GetStringValue)         \
	X(cJSON_IsArray) X(cJSON_IsBool) X(cJSON_IsNull) X(cJSON_IsNumber) X(cJSON_IsObject)       \
	X(cJSON_IsString) X(cJSON_IsTrue) X(cJSON_Parse) X(cJSON_ParseWithLength)                  \
	X(cJSON_ParseWithLengthOpts)                                                               \
	X(cJSON_PrintUnformatted) X(cJSON_free) X(cJSON_malloc)

#define CJSON_FIELD(f) __typeof__(f) *f;
struct cjson_funcs {
	void *lib; /* the dlopen handle, NULL until cjson_open succeeds */
	CJSON_FUNCS(CJSON_FIELD)
};
#undef CJSON_FIELD
extern struct cjson_funcs cjson_fn;

/* Open libcjson and fill cjson_fn (once; later calls return 0). 0, or -1 and a message in err. */
int cjson_open(char *err, size_t errlen);
/* cjson_fn, opened if it was not: exits with a message if libcjson cannot be opened */
const struct cjson_funcs *cjson_need(void);

static inline const struct cjson_funcs *cjson_fns(void)
{
	return __builtin_expect(cjson_fn.lib != NULL, 1) ? &cjson_fn : cjson_need();
}

#ifndef CJSON_NO_MACROS /* cjson.c, which fills the struct */
#define cJSON_AddArrayToObject (cjson_fns()->cJSON_AddArrayToObject)
#define cJSON_AddBoolToObject (cjson_fns()->cJSON_AddBoolToObject)
#define cJSON_AddFalseToObject (cjson_fns()->cJSON_AddFalseToObject)
#define cJSON_AddItemToArray (cjson_fns()->cJSON_AddItemToArray)
#define cJSON_AddItemToObject (cjson_fns()->cJSON_AddItemToObject)
#define cJSON_AddNullToObject (cjson_fns()->cJSON_AddNullToObject)
#define cJSON_AddNumberToObject (cjson_fns()->cJSON_AddNumberToObject)
#define cJSON_AddObjectToObject (cjson_fns()->cJSON_AddObjectToObject)
#define cJSON_AddStringToObject (cjson_fns()->cJSON_AddStringToObject)
#define cJSON_AddTrueToObject (cjson_fns()->cJSON_AddTrueToObject)
#define cJSON_CreateArray (cjson_fns()->cJSON_CreateArray)
#define cJSON_CreateObject (cjson_fns()->cJSON_CreateObject)
#define cJSON_CreateString (cjson_fns()->cJSON_CreateString)
#define cJSON_CreateStringArray (cjson_fns()->cJSON_CreateStringArray)
#define cJSON_Delete (cjson_fns()->cJSON_Delete)
#define cJSON_DeleteItemFromObjectCaseSensitive (cjson_fns()->cJSON_DeleteItemFromObjectCaseSensitive)
#define cJSON_Duplicate (cjson_fns()->cJSON_Duplicate)
#define cJSON_GetArrayItem (cjson_fns()->cJSON_GetArrayItem)
#define cJSON_GetArraySize (cjson_fns()->cJSON_GetArraySize)
#define cJSON_GetErrorPtr (cjson_fns()->cJSON_GetErrorPtr)
#define cJSON_GetObjectItem (cjson_fns()->cJSON_GetObjectItem)
#define cJSON_GetObjectItemCaseSensitive (cjson_fns()->cJSON_GetObjectItemCaseSensitive)
#define cJSON_GetStringValue (cjson_fns()->cJSON_GetStringValue)
#define cJSON_IsArray (cjson_fns()->cJSON_IsArray)
#define cJSON_IsBool (cjson_fns()->cJSON_IsBool)
#define cJSON_IsNull (cjson_fns()->cJSON_IsNull)
#define cJSON_IsNumber (cjson_fns()->cJSON_IsNumber)
#define cJSON_IsObject (cjson_fns()->cJSON_IsObject)
#define cJSON_IsString (cjson_fns()->cJSON_IsString)
#define cJSON_IsTrue (cjson_fns()->cJSON_IsTrue)
#define cJSON_Parse (cjson_fns()->cJSON_Parse)
#define cJSON_ParseWithLength (cjson_fns()->cJSON_ParseWithLength)
#define cJSON_ParseWithLengthOpts (cjson_fns()->cJSON_ParseWithLengthOpts)
#define cJSON_PrintUnformatted (cjson_fns()->cJSON_PrintUnformatted)
#define cJSON_free (cjson_fns()->cJSON_free)
#define cJSON_malloc (cjson_fns()->cJSON_malloc)
#endif

#endif
