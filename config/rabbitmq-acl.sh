#!/bin/sh
# RabbitMQ (rabbitmq_mqtt) permissions for consentgate hubs and consumers: a template to run
# once per node. RabbitMQ authorises MQTT topics as AMQP routing keys on the amq.topic
# exchange, where "/" becomes "." (portable topics have no "." of their own, so the mapping is
# exact). Topic permissions take the variable {username}: each hub, connecting with
# username = its hub_id, may only write and read its own subtree consentgate/<hub_id>/#.
# Passwords go to rabbitmqctl on its standard input, never on its command line (which every
# local user can read in ps); a trailing newline in a password file is dropped.
#   usage: HUB_PASSWORD_FILE=... CONSUMER_PASSWORD_FILE=... sh rabbitmq-acl.sh hub-1 hub-2 ...
#   (hub-1's password is read from $HUB_PASSWORD_FILE.hub-1)
set -eu
VHOST=${VHOST:-/}
BASE=${BASE:-consentgate}

for hub in "$@"; do
    rabbitmqctl add_user "$hub" < "$HUB_PASSWORD_FILE.$hub"
    # configure: its own MQTT session queues; write and read: amq.topic and those queues (a
    # subscription binds the session queue to amq.topic, which needs write on the queue).
    rabbitmqctl set_permissions -p "$VHOST" "$hub" "^mqtt-subscription-.*" "^(amq\.topic|mqtt-subscription-.*)$" "^(amq\.topic|mqtt-subscription-.*)$"
    rabbitmqctl set_topic_permissions -p "$VHOST" "$hub" amq.topic "^$BASE\.{username}\..*" "^$BASE\.{username}\..*"
done

# The consumer: reads every hub's records, announcements and state; writes only epoch/resend.
# Its subscriptions name every hub with "+", a "*" in the routing key: read allows both.
rabbitmqctl add_user consentgate-consumer < "$CONSUMER_PASSWORD_FILE"
rabbitmqctl set_permissions -p "$VHOST" consentgate-consumer "^mqtt-subscription-.*" "^(amq\.topic|mqtt-subscription-.*)$" "^(amq\.topic|mqtt-subscription-.*)$"
rabbitmqctl set_topic_permissions -p "$VHOST" consentgate-consumer amq.topic \
    "^$BASE\.[A-Za-z0-9_-]+\.request\.epoch\.resend$" \
    "^$BASE\.([A-Za-z0-9_-]+|\*)\.(data\..*|epoch|status|health|consent|devices|response\.epoch\.resend)$"
