/*
 * test_tls.c: tls.c with real certificates made by the openssl CLI in a mkdtemp
 * directory (RSA, EC, a chain file holding its key, an encrypted key, junk):
 * loads and their failures with the reason logged, reload keeping the old
 * context on a bad file, sessions surviving a reload, the per-listener override,
 * and real handshakes over an in-memory BIO pair: TLS 1.3 by default, TLS 1.2
 * with ECDHE+AEAD only, TLS 1.1 and non-ECDHE ciphers refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "config.h"
#include "tls.h"

static char dir[] = "/tmp/mailgate-test-tls-XXXXXX";

/* what tls_store_load() logged since log_reset() */
static char logbuf[8192];
static int n_warn, n_info;

static void
log_reset(void)
{
	logbuf[0] = '\0';
	n_warn = n_info = 0;
}

static void
log_capture(int warning, const char *msg)
{
	size_t len = strlen(logbuf);

	snprintf(logbuf + len, sizeof(logbuf) - len, "%s %s\n", warning ? "W" : "I", msg);
	if (warning)
		n_warn++;
	else
		n_info++;
}

/* dir/name in a static buffer (one of sixteen, so several can be used at once) */
static const char *
path(const char *name)
{
	static char bufs[16][512];
	static int next;
	char *b = bufs[next++ % 16];

	snprintf(b, sizeof(bufs[0]), "%s/%s", dir, name);
	return b;
}

static int
run(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static void
copy_file(const char *from, const char *to)
{
	assert_int_equal(run("cp '%s' '%s'", path(from), path(to)), 0);
}

static int
group_setup(void **state)
{
	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	if (run("cd %s && "
	    "openssl req -x509 -newkey rsa:2048 -nodes -keyout rsa.key -out rsa.crt "
	    "-subj /CN=mx.test.example -days 2 2>/dev/null && "
	    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
	    "-keyout ec.key -out ec.crt -subj /CN=mx.test.example -days 2 2>/dev/null && "
	    "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec2.key "
	    "2>/dev/null && "
	    "openssl pkey -in ec.key -aes128 -passout pass:secret -out enc.key 2>/dev/null && "
	    "cat rsa.crt rsa.key > chain.pem && "
	    "printf 'not a certificate\\n' > junk.pem", dir) != 0) {
		fprintf(stderr, "cannot make test certificates with the openssl CLI\n");
		return -1;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	run("rm -rf '%s'", dir);
	return 0;
}

/* a config from a printf format; fails the test when it does not load */
static struct config *
cfg_make(const char *fmt, ...)
{
	char text[4096], err[2048];
	struct config *c;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if ((c = config_load_string(text, "t", err, sizeof(err))) == NULL)
		print_error("config does not load: %s\n%s\n", err, text);
	assert_non_null(c);
	return c;
}

/* one listener "l" using the global tls given */
static struct config *
cfg_global(const char *certificate, const char *key)
{
	return cfg_make("tls = { certificate = \"%s\"; key = \"%s\"; };\n"
	    "listeners = ( { name = \"l\"; listen = \"127.0.0.1:2525\"; } );\n",
	    certificate, key);
}

/*
 * An in-memory handshake: a server SSL and a client SSL joined by a BIO pair,
 * stepped in turn until both finish or one fails.
 */
struct conn {
	SSL *s, *c;
	char failed[1024];	/* "server: <reason>" or "client: <reason>" */
};

static void
conn_start(struct conn *k, SSL_CTX *server, SSL_CTX *client)
{
	BIO *bs, *bc;

	memset(k, 0, sizeof(*k));
	k->s = SSL_new(server);
	k->c = SSL_new(client);
	assert_non_null(k->s);
	assert_non_null(k->c);
	assert_int_equal(BIO_new_bio_pair(&bs, 0, &bc, 0), 1);
	SSL_set_bio(k->s, bs, bs);
	SSL_set_bio(k->c, bc, bc);
	SSL_set_accept_state(k->s);
	SSL_set_connect_state(k->c);
}

/* one step of one side: 1 done, 0 wants more, -1 failed */
static int
conn_step(struct conn *k, SSL *ssl, const char *side)
{
	char reason[768];
	int rc = SSL_do_handshake(ssl), e;

	if (rc == 1)
		return 1;
	e = SSL_get_error(ssl, rc);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	if (k->failed[0] == '\0')
		snprintf(k->failed, sizeof(k->failed), "%s: %s", side,
		    tls_error_string(reason, sizeof(reason)));
	return -1;
}

/* true when the handshake completes and a line crosses it both ways */
static bool
conn_run(struct conn *k)
{
	char buf[64];
	int rs = 0, rc = 0;

	for (int i = 0; i < 20 && (rs != 1 || rc != 1); i++) {
		if (rc != 1 && (rc = conn_step(k, k->c, "client")) == -1)
			return false;
		if (rs != 1 && (rs = conn_step(k, k->s, "server")) == -1)
			return false;
	}
	if (rs != 1 || rc != 1)
		return false;
	assert_int_equal(SSL_write(k->c, "EHLO c.example\r\n", 16), 16);
	assert_int_equal(SSL_read(k->s, buf, sizeof(buf)), 16);
	assert_memory_equal(buf, "EHLO c.example\r\n", 16);
	assert_int_equal(SSL_write(k->s, "250 ok\r\n", 8), 8);
	assert_int_equal(SSL_read(k->c, buf, sizeof(buf)), 8);
	assert_memory_equal(buf, "250 ok\r\n", 8);
	return true;
}

static void
conn_free(struct conn *k)
{
	SSL_free(k->s);
	SSL_free(k->c);
	ERR_clear_error();
}

/* a handshake with the default client: its protocol ("TLSv1.3") and cipher */
static void
handshake_ok(SSL_CTX *server, SSL_CTX *client, const char *want_proto, const char *want_cipher)
{
	struct conn k;
	bool ok;

	conn_start(&k, server, client);
	ok = conn_run(&k);
	if (!ok)
		print_error("handshake failed: %s\n", k.failed);
	assert_true(ok);
	assert_string_equal(SSL_get_version(k.s), want_proto);
	assert_string_equal(SSL_get_version(k.c), want_proto);
	if (want_cipher)
		assert_string_equal(SSL_get_cipher_name(k.s), want_cipher);
	conn_free(&k);
}

static void
handshake_fails(SSL_CTX *server, SSL_CTX *client, const char *want_failure)
{
	struct conn k;

	conn_start(&k, server, client);
	assert_false(conn_run(&k));
	if (strstr(k.failed, want_failure) == NULL)
		print_error("failure \"%s\" lacks \"%s\"\n", k.failed, want_failure);
	assert_non_null(strstr(k.failed, want_failure));
	conn_free(&k);
}

/* a client limited to TLS 1.2 */
static SSL_CTX *
client_tls12(void)
{
	SSL_CTX *c = tls_client_ctx_new();

	assert_non_null(c);
	assert_int_equal(SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION), 1);
	return c;
}

static void
test_load_rsa(void **state)
{
	struct config *cfg = cfg_global(path("rsa.crt"), path("rsa.key"));
	struct tls_store *st = tls_store_new();
	SSL_CTX *ctx, *cli = tls_client_ctx_new(), *c12 = client_tls12(), *old;
	char want[600];

	(void)state;
	assert_non_null(st);
	log_reset();
	assert_int_equal(tls_store_load(st, cfg, log_capture), 0);
	assert_int_equal(n_warn, 0);
	assert_int_equal(n_info, 1);
	snprintf(want, sizeof(want), "I TLS: loaded certificate %s: subject /CN=mx.test.example, "
	    "valid until ", path("rsa.crt"));
	assert_int_equal(strncmp(logbuf, want, strlen(want)), 0);
	ctx = tls_store_ctx(st, &cfg->listeners[0]);
	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
	assert_true(SSL_CTX_get_options(ctx) & SSL_OP_NO_COMPRESSION);
	assert_true(SSL_CTX_get_options(ctx) & SSL_OP_NO_RENEGOTIATION);
	assert_true(SSL_CTX_get_options(ctx) & SSL_OP_CIPHER_SERVER_PREFERENCE);
	assert_true(SSL_CTX_get_mode(ctx) & SSL_MODE_RELEASE_BUFFERS);
	assert_int_equal(SSL_CTX_get_session_cache_mode(ctx), SSL_SESS_CACHE_SERVER);

	handshake_ok(ctx, cli, "TLSv1.3", NULL);
	/* the server's preference: AES128-GCM first */
	handshake_ok(ctx, c12, "TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256");

	/* loading the same config again: a fresh context, the old one still works */
	old = ctx;
	assert_int_equal(tls_store_load(st, cfg, log_capture), 0);
	ctx = tls_store_ctx(st, &cfg->listeners[0]);
	assert_ptr_not_equal(ctx, old);
	handshake_ok(old, cli, "TLSv1.3", NULL);
	SSL_CTX_free(old);
	SSL_CTX_free(ctx);
	SSL_CTX_free(cli);
	SSL_CTX_free(c12);
	tls_store_free(st);
	config_unref(cfg);
}

static void
test_old_protocols_and_ciphers_refused(void **state)
{
	struct config *cfg = cfg_global(path("rsa.crt"), path("rsa.key"));
	struct tls_store *st = tls_store_new();
	SSL_CTX *ctx, *c;

	(void)state;
	assert_int_equal(tls_store_load(st, cfg, log_capture), 0);
	ctx = tls_store_ctx(st, NULL);
	assert_non_null(ctx);

	/* a client that would do TLS 1.1 (security level 0 lets it offer it at all) */
	assert_non_null(c = tls_client_ctx_new());
	assert_int_equal(SSL_CTX_set_min_proto_version(c, TLS1_VERSION), 1);
	assert_int_equal(SSL_CTX_set_max_proto_version(c, TLS1_1_VERSION), 1);
	assert_int_equal(SSL_CTX_set_cipher_list(c, "DEFAULT:@SECLEVEL=0"), 1);
	handshake_fails(ctx, c, "server: unsupported protocol");
	SSL_CTX_free(c);

	/* TLS 1.2 without forward secrecy, or without AEAD */
	c = client_tls12();
	assert_int_equal(SSL_CTX_set_cipher_list(c, "AES128-GCM-SHA256:AES256-SHA256"), 1);
	handshake_fails(ctx, c, "server: no shared cipher");
	assert_int_equal(SSL_CTX_set_cipher_list(c, "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES128-SHA"), 1);
	handshake_fails(ctx, c, "server: no shared cipher");
	/* ...while one modern suite is enough */
	assert_int_equal(SSL_CTX_set_cipher_list(c, "ECDHE-RSA-CHACHA20-POLY1305"), 1);
	handshake_ok(ctx, c, "TLSv1.2", "ECDHE-RSA-CHACHA20-POLY1305");
	SSL_CTX_free(c);
	SSL_CTX_free(ctx);
	tls_store_free(st);
	config_unref(cfg);
}

static void
test_load_ec(void **state)
{
	struct config *cfg = cfg_global(path("ec.crt"), path("ec.key"));
	struct tls_store *st = tls_store_new();
	SSL_CTX *ctx, *cli = tls_client_ctx_new(), *c12 = client_tls12();

	(void)state;
	assert_int_equal(tls_store_load(st, cfg, log_capture), 0);
	assert_non_null(ctx = tls_store_ctx(st, &cfg->listeners[0]));
	handshake_ok(ctx, cli, "TLSv1.3", NULL);
	handshake_ok(ctx, c12, "TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256");
	SSL_CTX_free(ctx);
	SSL_CTX_free(cli);
	SSL_CTX_free(c12);
	tls_store_free(st);
	config_unref(cfg);
}

static void
test_chain_file_holds_key(void **state)
{
	struct config *cfg = cfg_global(path("chain.pem"), path("chain.pem"));
	struct tls_store *st = tls_store_new();
	SSL_CTX *ctx, *c12 = client_tls12();

	(void)state;
	log_reset();
	assert_int_equal(tls_store_load(st, cfg, log_capture), 0);
	assert_int_equal(n_warn, 0);
	assert_non_null(ctx = tls_store_ctx(st, &cfg->listeners[0]));
	handshake_ok(ctx, c12, "TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256");
	SSL_CTX_free(ctx);
	SSL_CTX_free(c12);
	tls_store_free(st);
	config_unref(cfg);
}

/* a pair that must fail to load, logging want (after "TLS: cannot load certificate C: ") */
static void
load_fails(const char *certificate, const char *key, const char *want)
{
	struct config *cfg = cfg_global(certificate, key);
	struct tls_store *st = tls_store_new();
	char prefix[600];

	log_reset();
	assert_int_equal(tls_store_load(st, cfg, log_capture), 1);
	assert_int_equal(n_warn, 1);
	assert_int_equal(n_info, 0);
	snprintf(prefix, sizeof(prefix), "W TLS: cannot load certificate %s: ", certificate);
	if (strncmp(logbuf, prefix, strlen(prefix)) != 0 || strstr(logbuf, want) == NULL)
		print_error("log \"%s\" is not \"%s...%s\"\n", logbuf, prefix, want);
	assert_int_equal(strncmp(logbuf, prefix, strlen(prefix)), 0);
	assert_non_null(strstr(logbuf, want));
	assert_null(strstr(logbuf, "keeping"));
	/* configured, but cannot be used now: STARTTLS answers 454 */
	assert_true(tls_configured(cfg, &cfg->listeners[0]));
	assert_null(tls_store_ctx(st, &cfg->listeners[0]));
	assert_null(tls_store_ctx(st, NULL));
	assert_int_equal(ERR_peek_error(), 0);		/* the queue was drained */
	tls_store_free(st);
	config_unref(cfg);
}

static void
test_missing_files(void **state)
{
	char want[600];

	(void)state;
	snprintf(want, sizeof(want), "No such file or directory (calling fopen(%s, r))",
	    path("nonexistent.crt"));
	load_fails(path("nonexistent.crt"), path("rsa.key"), want);
	snprintf(want, sizeof(want), "key %s: No such file or directory", path("nonexistent.key"));
	load_fails(path("rsa.crt"), path("nonexistent.key"), want);
	load_fails(dir, path("rsa.key"), "is a directory");
}

static void
test_bad_files(void **state)
{
	char want[600];

	(void)state;
	load_fails(path("junk.pem"), path("rsa.key"), "no start line");
	snprintf(want, sizeof(want), "key %s: no unencrypted private key found: ", path("junk.pem"));
	load_fails(path("rsa.crt"), path("junk.pem"), want);
	/*
	 * a key with a passphrase: refused at once, never a prompt on the terminal.
	 * Not "bad decrypt" always: with the wrong (empty) passphrase the padding
	 * comes out valid about once in 256 salts, and OpenSSL then fails on the
	 * ASN.1 of the garbage instead.
	 */
	snprintf(want, sizeof(want), "key %s: no unencrypted private key found: ",
	    path("enc.key"));
	load_fails(path("ec.crt"), path("enc.key"), want);
	/* a certificate file without the key it is told to hold */
	snprintf(want, sizeof(want), "key %s: no unencrypted private key found: ", path("rsa.crt"));
	load_fails(path("rsa.crt"), path("rsa.crt"), want);
	/* OpenSSL would read a directory as an empty file */
	snprintf(want, sizeof(want), "key %s: is a directory", dir);
	load_fails(path("rsa.crt"), dir, want);
}

static void
test_mismatched_key(void **state)
{
	char want[600];

	(void)state;
	/* same type, another key */
	snprintf(want, sizeof(want), "key %s: does not match the certificate: key values mismatch",
	    path("ec2.key"));
	load_fails(path("ec.crt"), path("ec2.key"), want);
	/* another type: OpenSSL files it in its own slot, the check catches it */
	snprintf(want, sizeof(want), "key %s: does not match the certificate: an EC key", path("ec.key"));
	load_fails(path("rsa.crt"), path("ec.key"), want);
}

static void
test_reload_keeps_old(void **state)
{
	struct config *cfg;
	struct tls_store *st = tls_store_new();
	SSL_CTX *ctx, *again, *newer, *cli = tls_client_ctx_new(), *c12 = client_tls12();

	(void)state;
	copy_file("rsa.crt", "live.crt");
	copy_file("rsa.key", "live.key");
	cfg = cfg_global(path("live.crt"), path("live.key"));
	assert_int_equal(tls_store_load(st, cfg, log_capture), 0);
	assert_non_null(ctx = tls_store_ctx(st, NULL));

	/* the certificate is replaced by junk: the reload keeps the running one */
	copy_file("junk.pem", "live.crt");
	log_reset();
	assert_int_equal(tls_store_load(st, cfg, log_capture), 1);
	assert_int_equal(n_warn, 1);
	assert_non_null(strstr(logbuf, "no start line"));
	assert_non_null(strstr(logbuf, "; keeping the one loaded before\n"));
	assert_non_null(again = tls_store_ctx(st, &cfg->listeners[0]));
	assert_ptr_equal(again, ctx);
	SSL_CTX_free(again);
	handshake_ok(ctx, cli, "TLSv1.3", NULL);

	/* twice in a row still keeps it */
	assert_int_equal(tls_store_load(st, cfg, log_capture), 1);
	assert_non_null(again = tls_store_ctx(st, NULL));
	assert_ptr_equal(again, ctx);
	SSL_CTX_free(again);

	/* a good new pair (EC now) replaces it; the old context lives on for its holder */
	copy_file("ec.crt", "live.crt");
	copy_file("ec.key", "live.key");
	log_reset();
	assert_int_equal(tls_store_load(st, cfg, log_capture), 0);
	assert_int_equal(n_warn, 0);
	assert_non_null(newer = tls_store_ctx(st, NULL));
	assert_ptr_not_equal(newer, ctx);
	handshake_ok(newer, c12, "TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256");
	handshake_ok(ctx, c12, "TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256");

	SSL_CTX_free(ctx);
	SSL_CTX_free(newer);
	SSL_CTX_free(cli);
	SSL_CTX_free(c12);
	tls_store_free(st);
	config_unref(cfg);
}

/* an SSL in the middle of its handshake outlives both the store's and the caller's references */
static void
test_session_survives_reload(void **state)
{
	struct config *cfg = cfg_global(path("rsa.crt"), path("rsa.key"));
	struct config *none = cfg_make("listeners = ( { name = \"l\"; listen = \"127.0.0.1:2525\"; } );\n");
	struct tls_store *st = tls_store_new();
	SSL_CTX *ctx, *cli = tls_client_ctx_new();
	struct conn k;

	(void)state;
	assert_int_equal(tls_store_load(st, cfg, log_capture), 0);
	assert_non_null(ctx = tls_store_ctx(st, NULL));
	conn_start(&k, ctx, cli);
	SSL_CTX_free(ctx);
	assert_int_equal(conn_step(&k, k.c, "client"), 0);	/* ClientHello out */
	assert_int_equal(conn_step(&k, k.s, "server"), 0);	/* ServerHello...Finished */

	/* TLS taken out of the config altogether */
	log_reset();
	assert_int_equal(tls_store_load(st, none, log_capture), 0);
	assert_int_equal(n_warn + n_info, 0);
	assert_null(tls_store_ctx(st, NULL));
	assert_false(tls_configured(none, &none->listeners[0]));

	assert_true(conn_run(&k));
	assert_string_equal(SSL_get_version(k.s), "TLSv1.3");
	conn_free(&k);			/* frees the last reference to the context */
	SSL_CTX_free(cli);
	tls_store_free(st);
	config_unref(cfg);
	config_unref(none);
}

static void
test_listener_override(void **state)
{
	struct config *cfg = cfg_make(
	    "tls = { certificate = \"%s\"; key = \"%s\"; };\n"
	    "listeners = (\n"
	    "  { name = \"a\"; listen = \"127.0.0.1:2525\"; tls = { certificate = \"%s\"; key = \"%s\"; }; },\n"
	    "  { name = \"b\"; listen = \"127.0.0.1:2526\"; },\n"
	    "  { name = \"c\"; listen = \"127.0.0.1:2527\"; tls = { certificate = \"%s\"; key = \"%s\"; }; },\n"
	    "  { name = \"d\"; listen = \"127.0.0.1:2528\"; tls = { certificate = \"%s\"; key = \"%s\"; }; }\n"
	    ");\n",
	    path("rsa.crt"), path("rsa.key"), path("ec.crt"), path("ec.key"),
	    path("rsa.crt"), path("rsa.key"), path("junk.pem"), path("ec.key"));
	struct tls_store *st = tls_store_new();
	SSL_CTX *a, *b, *c, *g, *c12 = client_tls12();

	(void)state;
	log_reset();
	/* three distinct pairs (c shares the global one): loaded once each */
	assert_int_equal(tls_store_load(st, cfg, log_capture), 1);
	assert_int_equal(n_info, 2);
	assert_int_equal(n_warn, 1);
	assert_non_null(strstr(logbuf, path("junk.pem")));

	assert_non_null(a = tls_store_ctx(st, config_listener(cfg, "a")));
	assert_non_null(b = tls_store_ctx(st, config_listener(cfg, "b")));
	assert_non_null(c = tls_store_ctx(st, config_listener(cfg, "c")));
	assert_non_null(g = tls_store_ctx(st, NULL));
	assert_ptr_not_equal(a, b);
	assert_ptr_equal(b, g);
	assert_ptr_equal(c, g);
	handshake_ok(a, c12, "TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256");
	handshake_ok(b, c12, "TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256");
	/* d's own pair failed: no falling back to the global certificate */
	assert_true(tls_configured(cfg, config_listener(cfg, "d")));
	assert_null(tls_store_ctx(st, config_listener(cfg, "d")));

	SSL_CTX_free(a);
	SSL_CTX_free(b);
	SSL_CTX_free(c);
	SSL_CTX_free(g);
	SSL_CTX_free(c12);
	tls_store_free(st);
	config_unref(cfg);
}

static void
test_configured(void **state)
{
	struct config *none = cfg_make("listeners = ( { name = \"l\"; listen = \"127.0.0.1:2525\"; } );\n");
	struct config *one = cfg_make("listeners = (\n"
	    "  { name = \"a\"; listen = \"127.0.0.1:2525\"; tls = { certificate = \"%s\"; key = \"%s\"; }; },\n"
	    "  { name = \"b\"; listen = \"127.0.0.1:2526\"; } );\n", path("rsa.crt"), path("rsa.key"));
	struct config *glob = cfg_global(path("rsa.crt"), path("rsa.key"));
	struct tls_store *st = tls_store_new();
	SSL_CTX *ctx;

	(void)state;
	assert_false(tls_configured(none, &none->listeners[0]));
	assert_false(tls_configured(none, NULL));
	assert_true(tls_configured(one, config_listener(one, "a")));
	assert_false(tls_configured(one, config_listener(one, "b")));
	assert_false(tls_configured(one, NULL));
	assert_true(tls_configured(glob, &glob->listeners[0]));
	assert_true(tls_configured(glob, NULL));

	log_reset();
	assert_int_equal(tls_store_load(st, none, log_capture), 0);
	assert_int_equal(n_warn + n_info, 0);
	assert_null(tls_store_ctx(st, &none->listeners[0]));

	assert_int_equal(tls_store_load(st, one, log_capture), 0);
	assert_non_null(ctx = tls_store_ctx(st, config_listener(one, "a")));
	SSL_CTX_free(ctx);
	assert_null(tls_store_ctx(st, config_listener(one, "b")));
	assert_null(tls_store_ctx(st, NULL));

	tls_store_free(st);
	tls_store_free(NULL);
	config_unref(none);
	config_unref(one);
	config_unref(glob);
}

static void
test_error_string(void **state)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char buf[256], small[12];

	(void)state;
	ERR_clear_error();
	assert_string_equal(tls_error_string(buf, sizeof(buf)), "unknown error");

	/* root cause first, with its detail; the "system lib" wrappers left out */
	assert_int_equal(SSL_CTX_use_certificate_chain_file(ctx, "/nonexistent/x.pem"), 0);
	assert_string_equal(tls_error_string(buf, sizeof(buf)),
	    "No such file or directory (calling fopen(/nonexistent/x.pem, r))");
	assert_int_equal(ERR_peek_error(), 0);

	/* cut to the buffer, and the queue drained all the same */
	assert_int_equal(SSL_CTX_use_certificate_chain_file(ctx, "/nonexistent/x.pem"), 0);
	assert_string_equal(tls_error_string(small, sizeof(small)), "No such fil");
	assert_int_equal(ERR_peek_error(), 0);
	assert_int_equal(SSL_CTX_use_certificate_chain_file(ctx, "/nonexistent/x.pem"), 0);
	tls_error_string(small, 0);
	assert_int_equal(ERR_peek_error(), 0);
	SSL_CTX_free(ctx);
}

static void
test_client_ctx(void **state)
{
	SSL_CTX *c = tls_client_ctx_new();

	(void)state;
	assert_non_null(c);
	assert_int_equal(SSL_CTX_get_min_proto_version(c), TLS1_2_VERSION);
	assert_int_equal(SSL_CTX_get_verify_mode(c), SSL_VERIFY_NONE);
	assert_true(SSL_CTX_get_options(c) & SSL_OP_NO_COMPRESSION);
	assert_true(SSL_CTX_get_options(c) & SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load_rsa),
		cmocka_unit_test(test_old_protocols_and_ciphers_refused),
		cmocka_unit_test(test_load_ec),
		cmocka_unit_test(test_chain_file_holds_key),
		cmocka_unit_test(test_missing_files),
		cmocka_unit_test(test_bad_files),
		cmocka_unit_test(test_mismatched_key),
		cmocka_unit_test(test_reload_keeps_old),
		cmocka_unit_test(test_session_survives_reload),
		cmocka_unit_test(test_listener_override),
		cmocka_unit_test(test_configured),
		cmocka_unit_test(test_error_string),
		cmocka_unit_test(test_client_ctx),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
