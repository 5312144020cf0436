import java.time.Duration;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StoreQueryParameters;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.InvalidStateStoreException;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.QueryableStoreTypes;
import org.apache.kafka.streams.state.ReadOnlyKeyValueStore;

/**
 * The Kafka Streams side of benches/scripts/streams_compare.py (issue 17): the tutorial's
 * per-customer count ({@code groupBy(customerId).count()} into a KTable) or its high-value
 * filter, timed over an input topic that is already written, against a real Kafka broker.
 *
 * <p>Usage: {@code StreamsBench BOOTSTRAP MODE INPUT OUTPUT RECORDS STATE_DIR GUARANTEE}, MODE
 * {@code count} or {@code filter}, GUARANTEE {@code at_least_once} or {@code exactly_once_v2}.
 * The input holds RECORDS JSON orders ({@code {"order_id":..,"customer_id":..,"amount":..}}
 * padded to 1 KiB) in one partition. It prints one JSON line: the time from {@code start()} to
 * done, and from the first record seen to done. Done means:
 * <ul>
 *   <li>filter: the app's committed offset of the input is RECORDS (so every record was
 *   processed and its output flushed before that commit);</li>
 *   <li>count: the same, and the KTable's counts (queried from its store) add up to RECORDS
 *   (every record went through the repartition topic into the count).</li>
 * </ul>
 * Kafka Streams' defaults otherwise (one stream thread, 10 MB record cache), except a commit
 * interval of 100 ms (exactly-once's default; at-least-once's is 30 s, which would make "done"
 * wait for the next commit).
 */
public final class StreamsBench {
    static final String STORE = "order-counts-store";
    static final double THRESHOLD = 1000.0;
    /** How often the app asks whether it is done. */
    static final long POLL_MS = 10;
    /** Give up after this long. */
    static final long TIMEOUT_MS = 600_000;

    private static final ObjectMapper JSON =
        new ObjectMapper().configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);

    /** The fields the topology reads; the padding is skipped. */
    public static final class Order {
        public long order_id;
        public JsonNode customer_id;
        public double amount;
    }

    static Order parse(byte[] value) {
        try {
            return JSON.readValue(value, Order.class);
        } catch (java.io.IOException error) {
            throw new IllegalArgumentException("not a JSON order", error);
        }
    }

    static String customerId(byte[] value) {
        JsonNode id = parse(value).customer_id;
        return id == null ? "" : id.asText();
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 7) {
            System.err.println(
                "usage: StreamsBench BOOTSTRAP MODE INPUT OUTPUT RECORDS STATE_DIR GUARANTEE");
            System.exit(2);
        }
        String bootstrap = args[0];
        String mode = args[1];
        String input = args[2];
        String output = args[3];
        long records = Long.parseLong(args[4]);
        String guarantee = args[6];
        String applicationId = "streams-bench-" + mode + "-" + System.nanoTime();

        AtomicLong seen = new AtomicLong();
        AtomicLong firstNs = new AtomicLong();
        StreamsBuilder builder = new StreamsBuilder();
        KStream<byte[], byte[]> orders = builder
            .stream(input, Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
            .peek((key, value) -> {
                if (seen.getAndIncrement() == 0) {
                    firstNs.set(System.nanoTime());
                }
            });
        if (mode.equals("filter")) {
            orders.filter((key, value) -> parse(value).amount > THRESHOLD)
                .to(output, Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));
        } else if (mode.equals("count")) {
            orders.groupBy((key, value) -> customerId(value),
                    Grouped.with(Serdes.String(), Serdes.ByteArray()))
                .count(Materialized.as(STORE))
                .toStream()
                .to(output, Produced.with(Serdes.String(), Serdes.Long()));
        } else {
            System.err.println("MODE is count or filter");
            System.exit(2);
        }

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, applicationId);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.STATE_DIR_CONFIG, args[5]);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");

        Properties adminProps = new Properties();
        adminProps.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        TopicPartition inputPartition = new TopicPartition(input, 0);
        try (Admin admin = Admin.create(adminProps);
             KafkaStreams streams = new KafkaStreams(builder.build(), props)) {
            long startNs = System.nanoTime();
            streams.start();
            long deadline = startNs + TIMEOUT_MS * 1_000_000L;
            long committed = 0;
            long sum = 0;
            while (true) {
                Map<TopicPartition, OffsetAndMetadata> offsets = admin
                    .listConsumerGroupOffsets(applicationId)
                    .partitionsToOffsetAndMetadata().get();
                OffsetAndMetadata offset = offsets.get(inputPartition);
                committed = offset == null ? 0 : offset.offset();
                if (committed >= records) {
                    if (mode.equals("filter")) {
                        break;
                    }
                    sum = countsSum(streams);
                    if (sum == records) {
                        break;
                    }
                }
                if (System.nanoTime() > deadline) {
                    System.err.printf("not done: committed %d, seen %d, sum %d of %d%n",
                        committed, seen.get(), sum, records);
                    System.exit(1);
                }
                Thread.sleep(POLL_MS);
            }
            long doneNs = System.nanoTime();
            double total = (doneNs - startNs) / 1e9;
            double afterFirst = (doneNs - firstNs.get()) / 1e9;
            System.out.printf(
                "{\"mode\": \"%s\", \"guarantee\": \"%s\", \"records\": %d, \"elapsed_s\": %.4f, "
                    + "\"records_per_s\": %.0f, \"first_progress_ms\": %.1f, "
                    + "\"records_per_s_after_first\": %.0f}%n",
                mode, guarantee, records, total, records / total,
                (firstNs.get() - startNs) / 1e6, records / afterFirst);
            System.out.flush();
            streams.close(Duration.ofSeconds(30));
            streams.cleanUp();
        }
    }

    /** The counts in the KTable's store added up (0 while the store is not queryable). */
    static long countsSum(KafkaStreams streams) {
        try {
            ReadOnlyKeyValueStore<String, Long> store = streams.store(
                StoreQueryParameters.fromNameAndType(STORE, QueryableStoreTypes.keyValueStore()));
            long sum = 0;
            try (KeyValueIterator<String, Long> all = store.all()) {
                while (all.hasNext()) {
                    KeyValue<String, Long> entry = all.next();
                    sum += entry.value;
                }
            }
            return sum;
        } catch (InvalidStateStoreException notReady) {
            return 0;
        }
    }
}
