import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.processor.StateRestoreListener;

/**
 * The Kafka Streams app of the tutorial (shared/reference/kafka-seed.md, "Kafka Streams"), run
 * by tests/e2e/kafka_streams_connect.rs against a Ledge node: orders in, the high-value ones
 * (filter), every order upper-cased (mapValues), and a KTable counting orders per customer
 * (groupBy + count), each to an output topic. The tutorial's stream-stream join needs a
 * customers stream the tutorial never defines, so it is left out.
 *
 * <p>Usage: {@code OrdersStreamsApp BOOTSTRAP STATE_DIR [GUARANTEE]}, the processing guarantee
 * {@code at_least_once} unless given. It creates its input and output
 * topics if missing (Admin.createTopics), runs until a line "stop" (or end of input) on stdin,
 * then closes cleanly, committing its offsets. It prints one line per event the test reads:
 * {@code state RUNNING}, {@code restored STORE PARTITION RECORDS}, {@code closed}.
 */
public final class OrdersStreamsApp {
    static final String APPLICATION_ID = "orders-app";
    static final String ORDERS = "orders";
    static final String HIGH_VALUE = "high-value-orders";
    static final String UPPER = "orders-upper";
    static final String COUNTS = "order-counts";

    private static final Pattern AMOUNT = Pattern.compile("\"amount\"\\s*:\\s*([0-9.]+)");
    private static final Pattern CUSTOMER = Pattern.compile("\"customer_id\"\\s*:\\s*([0-9]+)");

    static double parseAmount(String order) {
        Matcher matcher = AMOUNT.matcher(order);
        return matcher.find() ? Double.parseDouble(matcher.group(1)) : 0.0;
    }

    static String extractCustomerId(String order) {
        Matcher matcher = CUSTOMER.matcher(order);
        return matcher.find() ? matcher.group(1) : "unknown";
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 2 && args.length != 3) {
            System.err.println("usage: OrdersStreamsApp BOOTSTRAP STATE_DIR [GUARANTEE]");
            System.exit(2);
        }
        String bootstrap = args[0];
        createTopics(bootstrap);

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, APPLICATION_ID);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(
            StreamsConfig.PROCESSING_GUARANTEE_CONFIG,
            args.length == 3 ? args[2] : StreamsConfig.AT_LEAST_ONCE);
        props.put(StreamsConfig.STATE_DIR_CONFIG, args[1]);
        // No record cache: every count update reaches the output topic, so the test can check
        // the whole sequence 1, 2, ... n per customer, not only the last value.
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 500);
        // A closed Streams member stays in its group (Streams sends no LeaveGroup for dynamic
        // members), so a restarted app waits for its session to expire before the rebalance
        // completes: 6 s (Kafka's smallest allowed session) rather than the default 45 s.
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), 6000);
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), 1500);

        StreamsBuilder builder = new StreamsBuilder();
        KStream<String, String> orders = builder.stream(ORDERS);
        // Filter
        KStream<String, String> highValue = orders.filter(
            (key, value) -> parseAmount(value) > 1000
        );
        // Map
        KStream<String, String> transformed = orders.mapValues(
            value -> value.toUpperCase()
        );
        // GroupBy + Aggregate
        KTable<String, Long> orderCounts = orders
            .groupBy((key, value) -> extractCustomerId(value))
            .count();
        // Output
        highValue.to(HIGH_VALUE);
        transformed.to(UPPER);
        orderCounts.toStream().mapValues(count -> Long.toString(count)).to(COUNTS);

        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        streams.setStateListener((now, before) -> say("state " + now));
        streams.setUncaughtExceptionHandler(exception -> {
            say("failed " + exception);
            exception.printStackTrace();
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.setGlobalStateRestoreListener(new StateRestoreListener() {
            @Override
            public void onRestoreStart(TopicPartition partition, String store, long start, long end) {}

            @Override
            public void onBatchRestored(TopicPartition partition, String store, long end, long count) {}

            @Override
            public void onRestoreEnd(TopicPartition partition, String store, long total) {
                say("restored " + store + " " + partition.partition() + " " + total);
            }
        });
        streams.start();

        BufferedReader stdin =
            new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = stdin.readLine()) != null && !line.equals("stop")) {}
        boolean closed = streams.close(Duration.ofSeconds(60));
        say(closed ? "closed" : "close timed out");
        System.exit(closed ? 0 : 1);
    }

    /** The input topic (2 partitions, so the groupBy really repartitions) and the outputs. */
    static void createTopics(String bootstrap) throws InterruptedException {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(props)) {
            for (NewTopic topic : List.of(
                    new NewTopic(ORDERS, 2, (short) -1),
                    new NewTopic(HIGH_VALUE, 1, (short) -1),
                    new NewTopic(UPPER, 1, (short) -1),
                    new NewTopic(COUNTS, 1, (short) -1))) {
                try {
                    admin.createTopics(List.of(topic)).all().get();
                } catch (ExecutionException error) {
                    if (!(error.getCause() instanceof TopicExistsException)) {
                        throw new IllegalStateException("creating " + topic.name(), error);
                    }
                }
            }
        }
    }

    private static synchronized void say(String line) {
        System.out.println(line);
        System.out.flush();
    }
}
