#!/bin/sh
# NATS (MQTT gateway) users and permissions for consentgate hubs and consumers: a template that
# writes an `authorization` block to include in nats-server.conf (`include ./consentgate-acl.conf`).
# NATS authorises MQTT topics as NATS subjects, where "/" becomes "." (portable topics have no
# "." of their own, so the mapping is exact). Plain NATS config has no {username} variable:
# the block lists one user per hub, each allowed only its own subtree consentgate/<hub_id>/#.
# An MQTT filter a/# is the two subjects a and a.>; QoS 1 deliveries reach a subscriber through
# the server's "$MQTT.sub.>" subjects.
#   usage: HUB_PASSWORD_FILE=... CONSUMER_PASSWORD_FILE=... sh nats-acl.sh hub-1 hub-2 ... > consentgate-acl.conf
#   (the output holds the passwords: keep it mode 0600, readable by nats-server only)
set -eu
BASE=${BASE:-consentgate}
umask 077

quote() { printf '"%s"' "$(sed 's/[\\"]/\\&/g' "$1" | tr -d '\r\n')"; }

echo "authorization {"
echo "  users = ["
for hub in "$@"; do
    case "$hub" in *[!A-Za-z0-9_-]*|"") echo "hub id '$hub' is not [A-Za-z0-9_-]" >&2; exit 2;; esac
    cat <<BLOCK
    {
      user: "$hub", password: $(quote "$HUB_PASSWORD_FILE.$hub")
      allowed_connection_types: ["MQTT"]
      permissions: {
        publish: { allow: ["$BASE.$hub.>"] }
        subscribe: { allow: ["$BASE.$hub.>", "\$MQTT.sub.>"] }
      }
    }
BLOCK
done
# The consumer: reads every hub's records, announcements and state; writes only epoch/resend.
cat <<BLOCK
    {
      user: "consentgate-consumer", password: $(quote "$CONSUMER_PASSWORD_FILE")
      allowed_connection_types: ["MQTT"]
      permissions: {
        publish: { allow: ["$BASE.*.request.epoch.resend"] }
        subscribe: {
          allow: ["$BASE.*.data", "$BASE.*.data.>", "$BASE.*.epoch", "$BASE.*.status", "$BASE.*.health",
                  "$BASE.*.consent", "$BASE.*.devices", "$BASE.*.response.epoch.resend",
                  "\$MQTT.sub.>"]
        }
      }
    }
  ]
}
BLOCK
