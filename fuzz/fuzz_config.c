/*
 * fuzz_config: the config loader, config_load_string() (libconfig syntax,
 * then mailgate's own validation of every setting, HAT hosts, RAT, routes,
 * listen addresses, sizes and durations), freed again; and for a text that
 * loads, config_print() must give a text that loads back (config_print.c: "loads
 * back into the same config") and prints the same again (a fixed point).
 * Also config_parse_size() and config_parse_duration() on the raw input.
 *
 * Not a client's input, but the operator's, and `mailgate check` runs on files
 * people edit by hand. @include is left out: libconfig resolves it against
 * the working directory, so a fuzzer could name any file on the machine.
 */
#include "fuzz.h"

#include "config.h"

static char *
print_config(const struct config *cfg, size_t *len)
{
	char *text = NULL;
	FILE *fp = open_memstream(&text, len);

	if (fp == NULL)
		abort();
	config_print(cfg, fp);
	if (fclose(fp) != 0)
		abort();
	return text;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[4096], err2[4096];
	struct config *cfg, *cfg2, *cfg3;
	char *text, *p1, *p2, *p3;
	size_t l1, l2, l3;
	uint64_t sz;
	unsigned secs;

	if (memmem(data, size, "@include", 8) != NULL)
		return -1;		/* not added to the corpus */
	text = fz_strndup(data, size);

	(void)config_parse_size(text, &sz);
	(void)config_parse_duration(text, &secs);

	cfg = config_load_string(text, "fuzz.conf", err, sizeof(err));
	if (cfg == NULL) {
		FUZZ_CHECK(err[0] != '\0' && memchr(err, '\0', sizeof(err)) != NULL,
		    "refused without a reason");
		free(text);
		return 0;
	}
	p1 = print_config(cfg, &l1);
	cfg2 = config_load_string(p1, "fuzz.conf", err2, sizeof(err2));
	FUZZ_CHECK(cfg2 != NULL, "the printed config does not load back: %s\n"
	    "--- input ---\n%s\n--- printed ---\n%s", err2, text, p1);
	p2 = print_config(cfg2, &l2);
	FUZZ_CHECK(l1 == l2 && memcmp(p1, p2, l1) == 0, "printing is no fixed point\n"
	    "--- first ---\n%s\n--- second ---\n%s", p1, p2);
	/* refcounting as sessions use it */
	cfg3 = config_ref(cfg2);
	config_unref(cfg2);
	p3 = print_config(cfg3, &l3);
	FUZZ_CHECK(l3 == l2 && memcmp(p3, p2, l2) == 0, "config changed");
	config_unref(cfg3);
	config_unref(cfg);
	free(p1);
	free(p2);
	free(p3);
	free(text);
	return 0;
}
