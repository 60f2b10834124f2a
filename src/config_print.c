/*
 * config_print.c: config_print() (see config.h): the effective config, every
 * default filled in, as valid libconfig that loads back into the same config.
 * Plain settings print through config.c's field tables (config_fields.h);
 * specials (policies, listeners, HAT, RAT, routes) print by hand here.
 */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "config_fields.h"
#include "hat.h"

/* enums are stored through an int (see config_fields.h) */
static int
get_enum(const void *base, const struct field *f)
{
	int v;

	memcpy(&v, CAT(base, f, char), sizeof(v));
	return v;
}

static uint64_t
load_number(const void *base, const struct field *f)
{
	if (f->type == F_INT)
		return (uint64_t)*CAT(base, f, int);
	if (f->type == F_U64 || f->type == F_SIZE)
		return *CAT(base, f, uint64_t);
	return *CAT(base, f, unsigned);
}

/* indent < 0 prints an entry on one line */
typedef void (*print_special_fn)(FILE *, const struct field *, const void *, int);

static void print_fields(FILE *, const struct field *, const void *, int, print_special_fn);

static void
print_str(FILE *fp, const char *s)
{
	fputc('"', fp);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(fp, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			fprintf(fp, "\\x%02x", c);
		else
			fputc(c, fp);
	}
	fputc('"', fp);
}

/* [ "a", "b" ] from the char * at offset off of n structs of size stride */
static void
print_texts(FILE *fp, const void *first, size_t n, size_t stride, size_t off)
{
	fputs("[ ", fp);
	for (size_t i = 0; i < n; i++) {
		const char *p = (const char *)first + i * stride + off;

		print_str(fp, *(char *const *)(const void *)p);
		fputs(i + 1 < n ? ", " : " ", fp);
	}
	fputc(']', fp);
}

/* ( { ... }, ... ): one entry a line when oneline, else a block each */
static void
print_entries(FILE *fp, const void *first, size_t n, size_t stride, const struct field *tab,
    print_special_fn special, int indent, bool oneline)
{
	fputs(n == 0 ? "( )" : "(\n", fp);
	for (size_t i = 0; i < n; i++) {
		fprintf(fp, "%*s{%s", indent + 2, "", oneline ? " " : "\n");
		print_fields(fp, tab, (const char *)first + i * stride, oneline ? -1 : indent + 4,
		    special);
		fprintf(fp, "%*s}%s\n", oneline ? 0 : indent + 2, "", i + 1 < n ? "," : "");
	}
	if (n > 0)
		fprintf(fp, "%*s)", indent, "");
}

static bool
has_value(const struct field *f, const void *base)
{
	if (f->type == F_STR)
		return *CAT(base, f, char *) != NULL;
	if (f->type == F_GROUP) {
		for (const struct field *g = f->sub; g->name != NULL; g++)
			if (has_value(g, CAT(base, f, char)))
				return true;
		return false;
	}
	return true;
}

static void
print_value(FILE *fp, const struct field *f, const void *base, int indent)
{
	char buf[32];

	switch (f->type) {
	case F_GROUP:
		if (!has_value(f, base)) {
			fputs("{ }", fp);
			break;
		}
		fputs("{\n", fp);
		print_fields(fp, f->sub, CAT(base, f, char), indent + 2, NULL);
		fprintf(fp, "%*s}", indent, "");
		break;
	case F_STR:
	case F_TEXT:
		print_str(fp, *CAT(base, f, char *));
		break;
	case F_BOOL:
		fputs(*CAT(base, f, bool) ? "true" : "false", fp);
		break;
	case F_ENUM:
		print_str(fp, f->words[get_enum(base, f)]);
		break;
	case F_STRLIST:
		print_texts(fp, *CAT(base, f, strv), CCOUNT(base, f), sizeof(char *), 0);
		break;
	default:
		/* libconfig takes a plain integer as 32 bits: wider ones need the L */
		if (config_fmt_number(buf, sizeof(buf), f, load_number(base, f)))
			fprintf(fp, "\"%s\"", buf);
		else
			fprintf(fp, "%s%s", buf, load_number(base, f) > INT_MAX ? "L" : "");
		break;
	}
}

static void
print_fields(FILE *fp, const struct field *tab, const void *base, int indent,
    print_special_fn special)
{
	for (const struct field *f = tab; f->name != NULL; f++) {
		bool is_special = f->type == F_SPECIAL;

		if (is_special ? special == NULL : !has_value(f, base) && f->type != F_GROUP)
			continue;
		fprintf(fp, "%*s%s = ", indent < 0 ? 0 : indent, "", f->name);
		if (is_special)
			special(fp, f, base, indent);
		else
			print_value(fp, f, base, indent);
		fputs(indent < 0 ? "; " : ";\n", fp);
	}
}

static void
print_hat_special(FILE *fp, const struct field *f, const void *base, int indent)
{
	const struct hat_rule *r = base;

	(void)indent;
	if (strcmp(f->name, "hosts") == 0)
		print_texts(fp, r->hosts, r->n_hosts, sizeof(*r->hosts),
		    offsetof(struct hat_host, text));
	else
		print_str(fp, r->policy->name);
}

static void
print_route_special(FILE *fp, const struct field *f, const void *base, int indent)
{
	const struct route *r = base;

	(void)f;
	(void)indent;
	print_texts(fp, r->to, r->n_to, sizeof(*r->to), offsetof(struct route_target, text));
}

static void
print_listener_special(FILE *fp, const struct field *f, const void *base, int indent)
{
	const struct listener_conf *l = base;

	if (strcmp(f->name, "listen") == 0)
		print_texts(fp, l->addrs, l->n_addrs, sizeof(*l->addrs),
		    offsetof(struct listen_addr, text));
	else if (strcmp(f->name, "type") == 0)
		fputs(l->public ? "\"public\"" : "\"private\"", fp);
	else if (strcmp(f->name, "hat") == 0)
		print_entries(fp, l->hat, l->n_hat, sizeof(*l->hat), config_hat_fields,
		    print_hat_special, indent, true);
	else
		print_entries(fp, l->rat, l->n_rat, sizeof(*l->rat), config_rat_fields, NULL,
		    indent, true);
}

static void
print_root_special(FILE *fp, const struct field *f, const void *base, int indent)
{
	const struct config *cfg = base;

	if (strcmp(f->name, "listeners") == 0)
		print_entries(fp, cfg->listeners, cfg->n_listeners, sizeof(*cfg->listeners),
		    config_listener_fields, print_listener_special, indent, false);
	else if (strcmp(f->name, "routes") == 0)
		print_entries(fp, cfg->routes, cfg->n_routes, sizeof(*cfg->routes),
		    config_route_fields, print_route_special, indent, true);
	else {
		fputs("{\n  # every setting of each policy, policy_defaults' ones included\n", fp);
		for (size_t i = 0; i < cfg->n_policies; i++) {
			fprintf(fp, "  %s = {\n", cfg->policies[i].name);
			print_fields(fp, config_policy_fields, &cfg->policies[i], 4, NULL);
			fputs("  };\n", fp);
		}
		fputc('}', fp);
	}
}

void
config_print(const struct config *cfg, FILE *fp)
{
	fprintf(fp, "# effective configuration of %s\n", cfg->file);
	print_fields(fp, config_root_fields, cfg, 0, print_root_special);
}
