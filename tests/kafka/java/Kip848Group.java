// Kafka 4's Java consumer with the KIP-848 group protocol (`group.protocol=consumer`: the
// broker assigns; ConsumerGroupHeartbeat) against one broker, driven by
// tests/e2e/kafka_java.rs (`kafka_java_kip848_consumer_group`), which compiles it with javac.
//
// Usage: java Kip848Group BOOTSTRAP TOPIC PARTITIONS GROUP
//
// It prints one line per step; at lines ending in "WAIT" it reads one line from stdin first
// (the test runs `kafka-consumer-groups`, or starts or stops a native QUIC member, there):
//   PRODUCED n          n records written by an idempotent producer
//   A_ALL p n           consumer A owns all p partitions and has read n records
//   SPLIT a b WAIT      consumer B joined: A owns a partitions, B b, every one owned once
//   TAKEOVER p n        B left (close): A owns all p again; n distinct records read so far
//   QUIC WAIT           the test starts a QUIC member in the group
//   SHARED a WAIT       A gave partitions up to the QUIC member; the test stops it
//   ALL_BACK p n        A owns all p again and has read every record
//   DONE                A committed and left
// Any step that does not happen within STEP_MAX_MS prints "TIMEOUT <step> ..." and exits 2.

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.function.BooleanSupplier;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class Kip848Group {
    /** Longest wait for one step (a join, a rebalance, the records). */
    static final long STEP_MAX_MS = 60_000;

    static final Set<String> seen = new HashSet<>();
    static final BufferedReader stdin = new BufferedReader(new InputStreamReader(System.in));

    static KafkaConsumer<String, String> consumer(String bootstrap, String group, String clientId) {
        Properties properties = new Properties();
        properties.put("bootstrap.servers", bootstrap);
        properties.put("group.id", group);
        properties.put("group.protocol", "consumer");
        properties.put("client.id", clientId);
        properties.put("key.deserializer", StringDeserializer.class.getName());
        properties.put("value.deserializer", StringDeserializer.class.getName());
        properties.put("auto.offset.reset", "earliest");
        properties.put("enable.auto.commit", "false");
        return new KafkaConsumer<>(properties);
    }

    static void produce(String bootstrap, String topic, int partitions, int from, int count) {
        Properties properties = new Properties();
        properties.put("bootstrap.servers", bootstrap);
        properties.put("acks", "all");
        properties.put("enable.idempotence", "true");
        properties.put("key.serializer", StringSerializer.class.getName());
        properties.put("value.serializer", StringSerializer.class.getName());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(properties)) {
            for (int number = from; number < from + count; number++) {
                producer.send(new ProducerRecord<>(topic, number % partitions, "k" + number, "v" + number));
            }
            producer.flush();
        }
        System.out.println("PRODUCED " + count);
    }

    /** One poll; what it returned is recorded and committed. */
    static void poll(KafkaConsumer<String, String> consumer) {
        ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(100));
        for (ConsumerRecord<String, String> record : records) {
            seen.add(record.value());
        }
        if (!records.isEmpty()) {
            consumer.commitSync();
        }
    }

    @SafeVarargs
    static void until(String step, BooleanSupplier done, KafkaConsumer<String, String>... consumers) {
        long deadline = System.currentTimeMillis() + STEP_MAX_MS;
        while (!done.getAsBoolean()) {
            if (System.currentTimeMillis() > deadline) {
                StringBuilder owned = new StringBuilder();
                for (KafkaConsumer<String, String> consumer : consumers) {
                    owned.append(' ').append(consumer.assignment());
                }
                System.out.println("TIMEOUT " + step + " seen=" + seen.size() + owned);
                System.exit(2);
            }
            for (KafkaConsumer<String, String> consumer : consumers) {
                poll(consumer);
            }
        }
    }

    static void waitForTest() throws Exception {
        System.out.flush();
        if (stdin.readLine() == null) {
            throw new IllegalStateException("stdin closed");
        }
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        int partitions = Integer.parseInt(args[2]);
        String group = args[3];
        produce(bootstrap, topic, partitions, 0, 40);
        KafkaConsumer<String, String> a = consumer(bootstrap, group, "kip848-a");
        a.subscribe(List.of(topic));
        until("A_ALL", () -> a.assignment().size() == partitions && seen.size() == 40, a);
        System.out.println("A_ALL " + a.assignment().size() + " " + seen.size());

        KafkaConsumer<String, String> b = consumer(bootstrap, group, "kip848-b");
        b.subscribe(List.of(topic));
        until("SPLIT", () -> {
            Set<TopicPartition> both = new HashSet<>(a.assignment());
            both.addAll(b.assignment());
            return !a.assignment().isEmpty() && !b.assignment().isEmpty()
                && both.size() == partitions
                && a.assignment().size() + b.assignment().size() == partitions;
        }, a, b);
        System.out.println("SPLIT " + a.assignment().size() + " " + b.assignment().size() + " WAIT");
        waitForTest();

        produce(bootstrap, topic, partitions, 40, 20);
        until("SPLIT_READ", () -> seen.size() == 60, a, b);
        b.close();
        until("TAKEOVER", () -> a.assignment().size() == partitions, a);
        System.out.println("TAKEOVER " + a.assignment().size() + " " + seen.size());

        System.out.println("QUIC WAIT");
        waitForTest();
        until("SHARED", () -> a.assignment().size() < partitions, a);
        System.out.println("SHARED " + a.assignment().size() + " WAIT");
        waitForTest();
        produce(bootstrap, topic, partitions, 60, 20);
        until("ALL_BACK", () -> a.assignment().size() == partitions && seen.size() == 80, a);
        System.out.println("ALL_BACK " + a.assignment().size() + " " + seen.size());
        a.commitSync();
        a.close();
        System.out.println("DONE");
    }
}
