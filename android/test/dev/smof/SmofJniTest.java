package dev.smof;

import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.file.Files;

/**
 * Host JVM test of the SMOF Java API and its JNI library (no Android classes run).
 * usage: java -Djava.library.path=target/release dev.smof.SmofJniTest MODEL INPUT.f32 REF.f32 WORKDIR
 */
public final class SmofJniTest {
    private static int checks = 0;
    private static int failures = 0;
    private static float[] input;
    private static float[] ref;

    interface Body {
        void run() throws Exception;
    }

    private static void check(boolean ok, String what) {
        checks++;
        if (!ok) {
            failures++;
            System.err.println("FAIL " + what);
        }
    }

    /** Checks {@code body} throws exactly {@code want} (or a subclass). */
    private static void expect(Class<? extends Throwable> want, String what, Body body) {
        checks++;
        try {
            body.run();
            failures++;
            System.err.println("FAIL " + what + ": no exception, want " + want.getSimpleName());
        } catch (Throwable t) {
            if (want.isInstance(t)) {
                System.out.println("ok   " + what + ": " + t.getClass().getSimpleName() + ": "
                        + t.getMessage());
            } else {
                failures++;
                System.err.println("FAIL " + what + ": got " + t + ", want " + want.getSimpleName());
            }
        }
    }

    /** The cosine similarity of {@code got} to the reference output. */
    private static double cosineToRef(float[] got) {
        double dot = 0, nr = 0, ng = 0;
        for (int i = 0; i < ref.length; i++) {
            dot += (double) got[i] * ref[i];
            nr += (double) ref[i] * ref[i];
            ng += (double) got[i] * got[i];
        }
        return dot / Math.sqrt(nr * ng);
    }

    private static void compare(float[] got, String what) {
        checks++;
        if (got == null || got.length != ref.length) {
            failures++;
            System.err.println("FAIL " + what + ": length " + (got == null ? -1 : got.length));
            return;
        }
        float maxabs = 0;
        for (float v : ref) maxabs = Math.max(maxabs, Math.abs(v));
        double worst = 0;
        for (int i = 0; i < ref.length; i++) {
            double scale = Math.max(Math.abs(ref[i]), 1e-3 * maxabs);
            worst = Math.max(worst, Math.abs(got[i] - ref[i]) / scale);
        }
        if (worst > 1e-5) {
            failures++;
            System.err.println("FAIL " + what + ": max relative error " + worst);
        } else {
            System.out.println("ok   " + what + ": max relative error " + worst);
        }
    }

    private static float[] readF32(String path) throws IOException {
        byte[] b = Files.readAllBytes(new File(path).toPath());
        FloatBuffer fb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer();
        float[] f = new float[fb.remaining()];
        fb.get(f);
        return f;
    }

    private static File embed(File dir, byte[] model, int prefix) throws IOException {
        File f = new File(dir, "embedded_" + prefix + ".bin");
        try (FileOutputStream out = new FileOutputStream(f)) {
            out.write(new byte[prefix]);
            out.write(model);
            out.write(new byte[] {1, 2, 3});
        }
        return f;
    }

    private static void runAll(SmofModel model, String what) {
        try (SmofSession s = new SmofSession(model)) {
            compare(s.run(input), what);
        }
    }

    public static void main(String[] args) throws Exception {
        String modelPath = args[0];
        input = readF32(args[1]);
        ref = readF32(args[2]);
        File work = new File(args[3]);
        byte[] modelBytes = Files.readAllBytes(new File(modelPath).toPath());

        // ---- happy paths ----
        SmofModel model = SmofModel.fromFile(modelPath);
        check(model.getInputCount() == 1 && model.getOutputCount() == 1, "io counts");
        int[] inShape = model.getInputShape(0);
        check(inShape.length == 4 && SmofModel.elements(inShape) == input.length, "input shape");
        check(SmofModel.elements(model.getOutputShape(0)) == ref.length, "output shape");
        check(model.getInputName(0) != null && !model.getInputName(0).isEmpty(), "input name");
        System.out.println("ok   input " + model.getInputName(0) + " "
                + java.util.Arrays.toString(inShape));

        // bf16: close to f32 where the CPU has bf16 kernels, the same elsewhere.
        try (SmofSession b = new SmofSession(model, 1, true)) {
            float[] got = b.run(input);
            int convs = b.getBf16Convs();
            if (convs > 0) {
                double cosine = cosineToRef(got);
                check(convs == 34, "bf16 convs " + convs + " (the backbone has 34 pointwise convs)");
                check(cosine >= 0.99, "bf16 embedding cosine to f32 " + cosine);
            } else {
                compare(got, "bf16 session without bf16 kernels");
            }
        }
        try (SmofSession f = new SmofSession(model, 1, false)) {
            check(f.getBf16Convs() == 0, "an f32 session has no bf16 convs");
            check(f.getF16Convs() == 0, "an f32 session has no f16 convs");
            check(f.getInt8Convs() == 0, "an f32 session has no int8 convs");
        }
        // f16: FEAT_FP16 is an arm64 feature; on other CPUs the session computes in f32.
        try (SmofSession h = new SmofSession(model, 1, SmofSession.Precision.F16)) {
            float[] got = h.run(input);
            int convs = h.getF16Convs();
            check(h.getBf16Convs() == 0, "an f16 session has no bf16 convs");
            if (convs > 0) {
                check(convs == 34, "f16 convs " + convs + " (the backbone has 34 pointwise convs)");
                check(cosineToRef(got) >= 0.99, "f16 embedding cosine to f32");
            } else {
                compare(got, "f16 session without f16 kernels");
            }
        }
        // int8: close to f32 where the CPU has AVX512-VNNI (or, on arm64, the dot product
        // instructions), the same elsewhere.
        try (SmofSession q = new SmofSession(model, 1, SmofSession.Precision.INT8)) {
            float[] got = q.run(input);
            int convs = q.getInt8Convs();
            check(q.getBf16Convs() == 0 && q.getF16Convs() == 0, "an int8 session has no bf16 or f16 convs");
            if (convs > 0) {
                double cosine = cosineToRef(got);
                check(convs == 34, "int8 convs " + convs + " (the backbone has 34 pointwise convs)");
                check(cosine >= 0.99, "int8 embedding cosine to f32 " + cosine);
            } else {
                compare(got, "int8 session without int8 kernels");
            }
        }

        SmofSession session = new SmofSession(model);
        check(session.getInputCount() == 1 && session.getOutputCount() == 1, "session counts");
        compare(session.run(input), "fromFile + run(float[])");

        FloatBuffer direct = ByteBuffer.allocateDirect(input.length * 4)
                .order(ByteOrder.nativeOrder()).asFloatBuffer();
        direct.put(input).flip();
        compare(session.run(direct), "run(direct FloatBuffer)");
        check(direct.position() == 0, "run(FloatBuffer) keeps the position");
        compare(session.run(FloatBuffer.wrap(input)), "run(heap FloatBuffer)");
        FloatBuffer outDirect = ByteBuffer.allocateDirect(ref.length * 4)
                .order(ByteOrder.nativeOrder()).asFloatBuffer();
        session.run(direct, outDirect);
        check(outDirect.position() == ref.length, "run(in, out) advances out");
        outDirect.flip();
        float[] got = new float[ref.length];
        outDirect.get(got);
        compare(got, "run(direct in, direct out)");
        FloatBuffer outHeap = FloatBuffer.allocate(ref.length);
        session.run(FloatBuffer.wrap(input), outHeap);
        compare(outHeap.array(), "run(heap in, heap out)");
        float[] into = new float[ref.length + 3];
        session.getOutput(0, into, 3);
        compare(java.util.Arrays.copyOfRange(into, 3, into.length), "getOutput(into array)");
        // Misaligned direct input (byte offset 2) is copied, still correct.
        ByteBuffer raw = ByteBuffer.allocateDirect(input.length * 4 + 2).order(ByteOrder.nativeOrder());
        raw.position(2);
        FloatBuffer odd = raw.slice().order(ByteOrder.nativeOrder()).asFloatBuffer();
        odd.put(input).flip();
        compare(session.run(odd), "run(misaligned direct FloatBuffer)");

        ByteBuffer bb = ByteBuffer.allocateDirect(modelBytes.length);
        bb.put(modelBytes).flip();
        try (SmofModel m = SmofModel.fromByteBuffer(bb)) {
            runAll(m, "fromByteBuffer(direct)");
        }
        try (SmofModel m = SmofModel.fromByteBuffer(ByteBuffer.wrap(modelBytes))) {
            runAll(m, "fromByteBuffer(heap)");
        }
        try (SmofModel m = SmofModel.fromBytes(modelBytes)) {
            runAll(m, "fromBytes");
        }
        try (FileInputStream in = new FileInputStream(modelPath);
                SmofModel m = SmofModel.fromFd(in.getFD(), 0, -1)) {
            runAll(m, "fromFd(whole file)");
        }
        for (int prefix : new int[] {4096, 64, 100, 3}) {
            File f = embed(work, modelBytes, prefix);
            SmofModel m;
            try (FileInputStream in = new FileInputStream(f)) {
                // This is exactly what fromAsset does with an AssetFileDescriptor.
                m = SmofModel.fromFd(in.getFD(), prefix, modelBytes.length);
            }
            runAll(m, "fromFd(offset " + prefix + "), descriptor closed before use");
            m.close();
        }

        // Two threads, one session each, one model.
        Thread[] threads = new Thread[2];
        final boolean[] ok = new boolean[2];
        for (int t = 0; t < 2; t++) {
            final int id = t;
            threads[t] = new Thread(() -> {
                try (SmofSession s = new SmofSession(model)) {
                    float[] y = s.run(input);
                    float[] y2 = s.run(input);
                    ok[id] = java.util.Arrays.equals(y, y2) && y.length == ref.length;
                }
            });
            threads[t].start();
        }
        for (Thread t : threads) t.join();
        check(ok[0] && ok[1], "two threads");
        compare(session.getOutput(0), "getOutput after threads");

        // ---- misuse ----
        File missing = new File(work, "missing.smof");
        File corrupt = new File(work, "corrupt.smof");
        Files.write(corrupt.toPath(), "not a smof model, just some text.....".getBytes());
        expect(IllegalArgumentException.class, "fromFile(null)", () -> SmofModel.fromFile((String) null));
        expect(IllegalArgumentException.class, "fromFile((File) null)", () -> SmofModel.fromFile((File) null));
        expect(IOException.class, "fromFile(missing)", () -> SmofModel.fromFile(missing.getPath()));
        expect(IOException.class, "fromFile(corrupt)", () -> SmofModel.fromFile(corrupt));
        expect(IOException.class, "fromFile(directory)", () -> SmofModel.fromFile(work));
        expect(IllegalArgumentException.class, "fromBytes(null)", () -> SmofModel.fromBytes(null));
        expect(IOException.class, "fromBytes(empty)", () -> SmofModel.fromBytes(new byte[0]));
        expect(IOException.class, "fromBytes(truncated)",
                () -> SmofModel.fromBytes(java.util.Arrays.copyOf(modelBytes, modelBytes.length / 2)));
        byte[] damaged = modelBytes.clone();
        damaged[damaged.length - 1000] ^= 0x7f;
        expect(IOException.class, "fromBytes(damaged weights)", () -> SmofModel.fromBytes(damaged));
        expect(IllegalArgumentException.class, "fromByteBuffer(null)", () -> SmofModel.fromByteBuffer(null));
        expect(IOException.class, "fromByteBuffer(garbage direct)",
                () -> SmofModel.fromByteBuffer(ByteBuffer.allocateDirect(100)));
        expect(IllegalArgumentException.class, "fromFd(null)", () -> SmofModel.fromFd(null, 0, -1));
        expect(IllegalArgumentException.class, "fromFd(-1)", () -> SmofModel.fromFd(-1, 0, -1));
        expect(IOException.class, "fromFd(not open)", () -> SmofModel.fromFd(987654, 0, -1));
        FileInputStream closed = new FileInputStream(modelPath);
        java.io.FileDescriptor closedFd = closed.getFD();
        closed.close();
        expect(IllegalArgumentException.class, "fromFd(closed FileDescriptor)",
                () -> SmofModel.fromFd(closedFd, 0, -1));
        try (FileInputStream in = new FileInputStream(modelPath)) {
            expect(IllegalArgumentException.class, "fromFd(negative offset)",
                    () -> SmofModel.fromFd(in.getFD(), -5, 10));
            expect(IOException.class, "fromFd(offset past end)",
                    () -> SmofModel.fromFd(in.getFD(), modelBytes.length + 10, -1));
            expect(IOException.class, "fromFd(range past end)",
                    () -> SmofModel.fromFd(in.getFD(), 64, modelBytes.length));
            expect(IOException.class, "fromFd(wrong offset)",
                    () -> SmofModel.fromFd(in.getFD(), 128, modelBytes.length - 128));
        }

        expect(IllegalArgumentException.class, "getInputShape(7)", () -> model.getInputShape(7));
        expect(IllegalArgumentException.class, "getOutputShape(-1)", () -> model.getOutputShape(-1));
        expect(IllegalArgumentException.class, "new SmofSession(null)", () -> new SmofSession(null));
        expect(IllegalArgumentException.class, "new SmofSession(threads -1)", () -> new SmofSession(model, -1));
        expect(IllegalArgumentException.class, "run((float[]) null)", () -> session.run((float[]) null));
        expect(IllegalArgumentException.class, "run((FloatBuffer) null)", () -> session.run((FloatBuffer) null));
        expect(IllegalArgumentException.class, "run(short input)",
                () -> session.run(new float[input.length - 1]));
        expect(IllegalArgumentException.class, "run(long input)",
                () -> session.run(new float[input.length + 1]));
        expect(IllegalArgumentException.class, "run(empty input)", () -> session.run(new float[0]));
        expect(IllegalArgumentException.class, "run(short FloatBuffer)",
                () -> session.run(FloatBuffer.allocate(10)));
        expect(IllegalArgumentException.class, "run(in, short out)",
                () -> session.run(FloatBuffer.wrap(input), FloatBuffer.allocate(ref.length - 1)));
        expect(IllegalArgumentException.class, "run(in, null)",
                () -> session.run(FloatBuffer.wrap(input), null));
        expect(IllegalArgumentException.class, "getOutput(1)", () -> session.getOutput(1));
        expect(IllegalArgumentException.class, "getOutput(into short array)",
                () -> session.getOutput(0, new float[ref.length], 1));
        expect(IllegalArgumentException.class, "getOutput(into null)",
                () -> session.getOutput(0, null, 0));
        expect(IllegalArgumentException.class, "getInputShape(3)", () -> session.getInputShape(3));
        compare(session.run(input), "run after misuse");

        // Close the model first: the session keeps the native model alive.
        model.close();
        model.close(); // no-op
        check(model.isClosed(), "model closed");
        expect(IllegalStateException.class, "model.getInputCount() after close", model::getInputCount);
        expect(IllegalStateException.class, "new SmofSession(closed model)", () -> new SmofSession(model));
        compare(session.run(input), "run after model.close()");
        session.close();
        session.close(); // no-op
        check(session.isClosed(), "session closed");
        expect(IllegalStateException.class, "run after close", () -> session.run(input));
        expect(IllegalStateException.class, "run(FloatBuffer) after close", () -> session.run(direct));
        expect(IllegalStateException.class, "getOutput after close", () -> session.getOutput(0));
        expect(IllegalStateException.class, "getBf16Convs after close", session::getBf16Convs);
        expect(IllegalStateException.class, "getF16Convs after close", session::getF16Convs);
        expect(IllegalStateException.class, "getInt8Convs after close", session::getInt8Convs);
        expect(IllegalArgumentException.class, "null precision",
                () -> new SmofSession(model, 1, (SmofSession.Precision) null));

        System.out.println(checks + " checks, " + failures + " failures");
        System.exit(failures == 0 ? 0 : 1);
    }
}
