/*
 * config_default.c: the config used when there is no -c and no ./mailgate.conf
 * (spec/config.md, "The embedded default"): a development setup that relays
 * for this machine only and delivers every message to maildirs under the
 * spool. It must load without error; `mailgate check` prints it with every
 * default filled in, ready to copy into a file.
 */
#include "config.h"

const char config_default_text[] =
"# mailgate: the built-in configuration, for trying it out on one machine.\n"
"# `mailgate check` prints it with every default filled in: save that as\n"
"# mailgate.conf and edit it.\n"
"\n"
"# hostname is left out: the machine's name is used.\n"
"spool   = \"./mailgate-spool\";               # messages, envelopes, MID counter\n"
"control = \"./mailgate-spool/control.sock\";  # the mailgate command talks here\n"
"log     = { file = \"-\"; format = \"esa\"; };   # \"-\" is standard error\n"
"\n"
"policies = {\n"
"  RELAYED = { action = \"relay\"; };           # may send to any recipient\n"
"  BLOCKED = { action = \"reject\"; };          # 554 at connect, then close\n"
"};\n"
"\n"
"# this machine relays, every other host is turned away\n"
"listeners = (\n"
"  { name = \"default\";\n"
"    listen = [ \"127.0.0.1:2525\" ];\n"
"    type = \"private\";                        # no RAT: the HAT alone decides\n"
"    hat = ( { group = \"RELAYLIST\"; hosts = [ \"127.0.0.0/8\", \"::1\" ];\n"
"              policy = \"RELAYED\"; },\n"
"            { group = \"ALL\"; hosts = [ \"ALL\" ]; policy = \"BLOCKED\"; } );\n"
"  }\n"
");\n"
"\n"
"# every recipient goes to ./mailgate-spool/mailboxes/<recipient>/{tmp,new,cur}\n"
"routes = (\n"
"  { domain = \"ALL\"; to = [ \"maildir:./mailgate-spool/mailboxes\" ]; }\n"
");\n";
