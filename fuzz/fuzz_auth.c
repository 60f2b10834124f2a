/*
 * fuzz_auth: what a client sends after AUTH (RFC 4954) and in reply to a 334:
 * smtp_sasl_decode() (base64, "*", "="), smtp_base64_decode() at every output
 * capacity the input asks for, smtp_base64_encode(), and the PLAIN message
 * parser smtp_sasl_plain() (RFC 4616). hostile.md 10, CVE-2018-6789.
 * Properties: the decoder never writes past cap (ASan sees the exact-size
 * heap buffer); base64 is strict, so whatever decodes encodes back to exactly
 * the input (one payload, one encoding); any bytes encode and decode back;
 * PLAIN fields, when taken, put back together give the message.
 *
 * Input: byte 0 picks the output capacity; the rest is the response line.
 */
#include "fuzz.h"

#include "smtp_syntax.h"

static void
check_plain(const unsigned char *buf, size_t len, size_t fcap)
{
	char *az = malloc(fcap), *user = malloc(fcap), *pass = malloc(fcap);
	int r;

	if (az == NULL || user == NULL || pass == NULL)
		abort();
	r = smtp_sasl_plain(buf, len, az, fcap, user, fcap, pass, fcap);
	if (r == 0) {
		size_t al = strlen(az), ul = strlen(user), pl = strlen(pass);
		FUZZ_CHECK(ul > 0 && pl > 0 && al < fcap && ul < fcap && pl < fcap,
		    "field lengths %zu %zu %zu cap %zu", al, ul, pl, fcap);
		FUZZ_CHECK(al + ul + pl + 2 == len && memcmp(buf, az, al) == 0 &&
		    buf[al] == 0 && memcmp(buf + al + 1, user, ul) == 0 && buf[al + 1 + ul] == 0 &&
		    memcmp(buf + al + ul + 2, pass, pl) == 0, "fields do not make the message");
	} else {
		FUZZ_CHECK(r == -1 && az[0] == '\0' && user[0] == '\0' && pass[0] == '\0',
		    "a refused PLAIN message left something behind");
	}
	free(az);
	free(user);
	free(pass);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in;
	unsigned char *out, *back;
	char *enc;
	size_t cap, enccap;
	int r, r2;

	if (size < 1)
		return 0;
	/* 0..255 octets, or (top bit) as many as the input could possibly need */
	cap = data[0] & 0x80 ? (size - 1) / 4 * 3 + 3 : data[0];
	in = (const char *)data + 1;
	size--;

	/* exactly cap bytes, so a write past it is a heap overflow ASan reports */
	out = malloc(cap ? cap : 1);
	if (out == NULL)
		abort();
	r = smtp_sasl_decode(in, size, out, cap);
	if (r == SMTP_SASL_CANCEL) {
		FUZZ_CHECK(size == 1 && in[0] == '*', "cancel for %zu octets", size);
	} else if (r >= 0) {
		FUZZ_CHECK((size_t)r <= cap, "decoded %d into %zu", r, cap);
		if (size == 1 && in[0] == '=') {
			FUZZ_CHECK(r == 0, "\"=\" decoded to %d octets", r);
		} else {
			enccap = (size_t)r / 3 * 4 + 5;
			enc = malloc(enccap);
			if (enc == NULL)
				abort();
			r2 = smtp_base64_encode(out, (size_t)r, enc, enccap);
			FUZZ_CHECK(r2 >= 0 && (size_t)r2 == size && memcmp(enc, in, size) == 0,
			    "\"%.*s\" decodes to %d octets that encode to \"%s\"", (int)size, in, r,
			    r2 >= 0 ? enc : "(error)");
			free(enc);
		}
		check_plain(out, (size_t)r, (size_t)data[0] % 64 + 1);
		check_plain(out, (size_t)r, 256);
	} else {
		FUZZ_CHECK(r == -1, "result %d", r);
	}
	free(out);

	/* any bytes: encode, then decode back; one octet less room must fail */
	enccap = (size + 2) / 3 * 4 + 1;
	enc = malloc(enccap);
	back = malloc(size ? size : 1);
	if (enc == NULL || back == NULL)
		abort();
	r = smtp_base64_encode((const unsigned char *)in, size, enc, enccap);
	FUZZ_CHECK(r >= 0 && (size_t)r == enccap - 1 && enc[r] == '\0', "encode %d", r);
	FUZZ_CHECK(smtp_base64_encode((const unsigned char *)in, size, enc, enccap - 1) == -1,
	    "encode into too little room");
	r = smtp_base64_encode((const unsigned char *)in, size, enc, enccap);
	r2 = smtp_base64_decode(enc, (size_t)r, back, size);
	FUZZ_CHECK(r2 >= 0 && (size_t)r2 == size && memcmp(back, in, size) == 0,
	    "round trip of %zu octets gave %d", size, r2);
	if (size > 0)
		FUZZ_CHECK(smtp_base64_decode(enc, (size_t)r, back, size - 1) == -1,
		    "decode into too little room");
	check_plain((const unsigned char *)in, size, 256);
	free(enc);
	free(back);
	return 0;
}
