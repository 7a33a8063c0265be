#!/bin/sh
# RabbitMQ (rabbitmq_mqtt) permissions for consentgate hubs and consumers: a template to run
# once per node. RabbitMQ authorises MQTT topics as AMQP routing keys on the amq.topic
# exchange, where "/" becomes "." (portable topics have no "." of their own, so the mapping is
# exact). Topic permissions take the variable {username}: each hub, connecting with
# username = its hub_id, may only write and read its own subtree consentgate/<hub_id>/#.
# Queues: the MQTT plugin keeps a session in the queues mqtt-subscription-<client id>qos0 and
# ...qos1, and the same user can reach them over AMQP, where no topic check guards a queue.
# So each user gets configure, write and read on its own session queues only: a hub on those
# of its client ids consentgate-<hub_id> and consentgate-<hub_id>-control, the consumer on
# those of consentgate-consume-*; plus write and read on amq.topic (publish, bind).
# Passwords go to rabbitmqctl on its standard input, never on its command line (which every
# local user can read in ps); a trailing newline in a password file is dropped. Run again on a
# node it has set up, it sets the passwords and permissions anew (users it made stay).
#   usage: HUB_PASSWORD_FILE=... CONSUMER_PASSWORD_FILE=... sh rabbitmq-acl.sh hub-1 hub-2 ...
#   (hub-1's password is read from $HUB_PASSWORD_FILE.hub-1)
set -eu
VHOST=${VHOST:-/}
BASE=${BASE:-consentgate}
SESSION=mqtt-subscription-consentgate

# Every hub id is checked before anything changes. It goes into the regexes as it is, so only
# the portable characters; and no id whose client ids are another one's: hub "x-control"
# would share its session with the control link of hub "x", hub "consume-x" with a consumer.
for hub in "$@"; do
    case "$hub" in
        "" | *[!A-Za-z0-9_-]* | *-control | consume-*)
            echo "rabbitmq-acl.sh: hub id '$hub' refused: use 1-64 of [A-Za-z0-9_-]," \
                "not ending in -control nor starting with consume-" >&2
            exit 2 ;;
    esac
    if [ "${#hub}" -gt 64 ]; then
        echo "rabbitmq-acl.sh: hub id '$hub' refused: longer than 64 characters" >&2
        exit 2
    fi
done

# user NAME PASSWORD_FILE: add the user, or give an existing one the password of the file.
user() {
    if rabbitmqctl -q list_users --no-table-headers | cut -f1 | grep -qxF -- "$1"; then
        rabbitmqctl change_password "$1" < "$2"
    else
        rabbitmqctl add_user "$1" < "$2"
    fi
}

for hub in "$@"; do
    user "$hub" "$HUB_PASSWORD_FILE.$hub"
    # configure: declare and delete its session queues; write: publish to amq.topic, bind its
    # queues (a subscription needs write on the queue); read: bind from amq.topic, consume.
    queues="$SESSION-$hub(-control)?qos[01]"
    rabbitmqctl set_permissions -p "$VHOST" "$hub" \
        "^$queues\$" "^(amq\.topic|$queues)\$" "^(amq\.topic|$queues)\$"
    rabbitmqctl set_topic_permissions -p "$VHOST" "$hub" amq.topic "^$BASE\.{username}\..*" "^$BASE\.{username}\..*"
done

# The consumer: reads every hub's records, announcements and state; writes only epoch/resend.
# Its subscriptions name every hub with "+", a "*" in the routing key: read allows both. Its
# client ids (consume --client-id included) start with consentgate-consume-.
user consentgate-consumer "$CONSUMER_PASSWORD_FILE"
queues="$SESSION-consume-.*qos[01]"
rabbitmqctl set_permissions -p "$VHOST" consentgate-consumer \
    "^$queues\$" "^(amq\.topic|$queues)\$" "^(amq\.topic|$queues)\$"
rabbitmqctl set_topic_permissions -p "$VHOST" consentgate-consumer amq.topic \
    "^$BASE\.[A-Za-z0-9_-]+\.request\.epoch\.resend$" \
    "^$BASE\.([A-Za-z0-9_-]+|\*)\.(data\..*|epoch|status|health|consent|devices|response\.epoch\.resend)$"
