package dev.smof;

import java.nio.ByteOrder;
import java.nio.FloatBuffer;

/**
 * One thread's planned execution of a {@link SmofModel}: every buffer is allocated when the
 * session is created, and {@code run} allocates nothing natively. Methods are synchronized;
 * for parallel inference create one session per thread. Use with try-with-resources.
 */
public final class SmofSession implements AutoCloseable {
    /** The arithmetic of a session's 1x1 convs (see the Rust {@code smof::Precision}). */
    public enum Precision {
        /** f32 throughout (the default). */
        F32,
        /**
         * bf16-rounded inputs and weights, products accumulated in f32, where the CPU has
         * FEAT_BF16 (arm64: Cortex-A510, A710, X2 and later) or AVX512-BF16 (x86-64: AMD Zen 4,
         * Intel Sapphire Rapids and later); f32 elsewhere.
         */
        BF16,
        /**
         * f16-rounded inputs and weights multiplied and added in f16, 32 channels at a time,
         * then in f32, where the CPU has FEAT_FP16 (arm64: Cortex-A55, A75, A76 and later,
         * most phones since 2018); f32 elsewhere.
         */
        F16,
        /**
         * Weights quantized to int8 per output channel (at session creation), inputs to 8 bits
         * per pixel as the session runs, the integers multiplied exactly, where the CPU has
         * the dot product instructions (arm64 FEAT_DotProd: Cortex-A55, A75, A76 and later;
         * x86-64 AVX512-VNNI: AMD Zen 4, Intel Ice Lake and later); f32 elsewhere.
         */
        INT8
    }

    private long handle;
    private final int[][] inputShapes;
    private final int[][] outputShapes;

    /** A session on the calling thread only. */
    public SmofSession(SmofModel model) {
        this(model, 1);
    }

    /** A session with {@code threads} worker threads (0 or 1: the calling thread only). */
    public SmofSession(SmofModel model, int threads) {
        this(model, threads, false);
    }

    /**
     * A session with {@code threads} worker threads; with {@code bf16}, its 1x1 convs multiply
     * bf16-rounded inputs and weights where the CPU has FEAT_BF16 (arm64: Cortex-A510, A710,
     * X2 and later) or AVX512-BF16 (x86-64: AMD Zen 4, Intel Sapphire Rapids and later), about
     * twice the multiply-adds per instruction, at a small
     * loss of precision; elsewhere it computes in f32. {@link #getBf16Convs} says how many
     * convs took it. The same as {@link Precision#BF16} or {@link Precision#F32}.
     */
    public SmofSession(SmofModel model, int threads, boolean bf16) {
        this(model, threads, bf16 ? Precision.BF16 : Precision.F32);
    }

    /**
     * A session with {@code threads} worker threads whose 1x1 convs compute in
     * {@code precision} where the CPU has the instructions for it, in f32 elsewhere
     * ({@link #getBf16Convs}, {@link #getF16Convs}, {@link #getInt8Convs} say how many convs
     * took it). Reduced precisions do two to four times the multiply-adds per instruction, at
     * a small loss of precision: {@link Precision#F16} is the closest to f32 on most phones,
     * {@link Precision#INT8} the fastest.
     */
    public SmofSession(SmofModel model, int threads, Precision precision) {
        if (model == null) throw new IllegalArgumentException("model is null");
        if (precision == null) throw new IllegalArgumentException("precision is null");
        if (threads < 0) throw new IllegalArgumentException("threads is negative: " + threads);
        synchronized (model) {
            long m = model.live();
            inputShapes = new int[model.getInputCount()][];
            for (int i = 0; i < inputShapes.length; i++) inputShapes[i] = model.getInputShape(i);
            outputShapes = new int[model.getOutputCount()][];
            for (int i = 0; i < outputShapes.length; i++) outputShapes[i] = model.getOutputShape(i);
            handle = nativeNew(m, threads, precision.ordinal());
        }
    }

    /** The number of convs (and, on AVX512-BF16, fully connected layers) this session runs
     *  in bf16 (0 unless created with bf16 on a CPU with FEAT_BF16 or AVX512-BF16). */
    public synchronized int getBf16Convs() {
        return nativeBf16Convs(live());
    }

    /** The number of convs (on a CPU with FEAT_FP16) and fully connected layers (any arm64
     *  CPU: f16 weights) this session runs in f16 (0 unless created with
     *  {@link Precision#F16} on arm64). */
    public synchronized int getF16Convs() {
        return nativeF16Convs(live());
    }

    /** The number of convs this session runs in int8 (0 unless created with
     *  {@link Precision#INT8} on a CPU with the dot product instructions). */
    public synchronized int getInt8Convs() {
        return nativeInt8Convs(live());
    }

    /** Number of model inputs. */
    public int getInputCount() {
        return inputShapes.length;
    }

    /** Number of model outputs. */
    public int getOutputCount() {
        return outputShapes.length;
    }

    /** Shape of input {@code index} (ONNX order, e.g. {@code [1, 3, 224, 224]}). */
    public int[] getInputShape(int index) {
        checkIndex(index, inputShapes.length, "input");
        return inputShapes[index].clone();
    }

    /** Shape of output {@code index} (ONNX order). */
    public int[] getOutputShape(int index) {
        checkIndex(index, outputShapes.length, "output");
        return outputShapes[index].clone();
    }

    /**
     * Runs a single-input model on {@code input} (NCHW float order, exactly the input's element
     * count) and returns output 0.
     */
    public synchronized float[] run(float[] input) {
        if (input == null) throw new IllegalArgumentException("input is null");
        long h = live();
        checkLength(input.length);
        nativeRunArray(h, input);
        return nativeOutput(h, 0);
    }

    /**
     * Runs a single-input model on the remaining floats of {@code input} (direct buffers in
     * native byte order are read in place) and returns output 0. Positions are not changed.
     */
    public synchronized float[] run(FloatBuffer input) {
        runBuffer(input);
        return nativeOutput(handle, 0);
    }

    /**
     * Runs on the remaining floats of {@code input} and writes output 0 into {@code output} at
     * its position, advancing it. Allocation-free when both buffers are direct.
     */
    public synchronized void run(FloatBuffer input, FloatBuffer output) {
        if (output == null) throw new IllegalArgumentException("output is null");
        int n = SmofModel.elements(outputShapes[0]);
        if (output.remaining() < n) {
            throw new IllegalArgumentException(
                    "output has " + output.remaining() + " floats remaining, needs " + n);
        }
        runBuffer(input);
        if (output.isDirect() && output.order() == ByteOrder.nativeOrder()) {
            nativeOutputDirect(handle, 0, output, output.position(), output.remaining());
            output.position(output.position() + n);
        } else if (output.hasArray()) {
            nativeOutputIntoArray(handle, 0, output.array(), output.arrayOffset() + output.position());
            output.position(output.position() + n);
        } else {
            output.put(nativeOutput(handle, 0));
        }
    }

    /** Output {@code index} of the last run (zeros before the first run). */
    public synchronized float[] getOutput(int index) {
        long h = live();
        checkIndex(index, outputShapes.length, "output");
        return nativeOutput(h, index);
    }

    /** Copies output {@code index} of the last run into {@code out} from {@code offset}. */
    public synchronized void getOutput(int index, float[] out, int offset) {
        long h = live();
        checkIndex(index, outputShapes.length, "output");
        if (out == null) throw new IllegalArgumentException("out is null");
        nativeOutputIntoArray(h, index, out, offset);
    }

    /** Releases the native session. Closing twice does nothing. */
    @Override
    public synchronized void close() {
        if (handle != 0) {
            long h = handle;
            handle = 0;
            nativeFree(h);
        }
    }

    /** Whether {@link #close()} has been called. */
    public synchronized boolean isClosed() {
        return handle == 0;
    }

    private void runBuffer(FloatBuffer input) {
        if (input == null) throw new IllegalArgumentException("input is null");
        long h = live();
        checkLength(input.remaining());
        if (input.isDirect() && input.order() == ByteOrder.nativeOrder()) {
            nativeRunDirect(h, input, input.position(), input.remaining());
        } else {
            float[] copy = new float[input.remaining()];
            input.duplicate().get(copy);
            nativeRunArray(h, copy);
        }
    }

    private long live() {
        if (handle == 0) throw new IllegalStateException("SmofSession is closed");
        return handle;
    }

    private void checkLength(int n) {
        if (inputShapes.length != 1) {
            throw new IllegalArgumentException(
                    "run(float[]) needs a single-input model; this one has " + inputShapes.length);
        }
        int want = SmofModel.elements(inputShapes[0]);
        if (n != want) {
            throw new IllegalArgumentException(
                    "input has " + n + " floats, the model expects " + want);
        }
    }

    private static void checkIndex(int index, int count, String what) {
        if (index < 0 || index >= count) {
            throw new IllegalArgumentException(
                    what + " index " + index + " out of range (model has " + count + ")");
        }
    }

    private static native long nativeNew(long model, int threads, int precision);

    private static native int nativeBf16Convs(long handle);

    private static native int nativeF16Convs(long handle);

    private static native int nativeInt8Convs(long handle);

    private static native void nativeFree(long handle);

    private static native void nativeRunArray(long handle, float[] input);

    private static native void nativeRunDirect(long handle, FloatBuffer input, int position, int remaining);

    private static native float[] nativeOutput(long handle, int index);

    private static native void nativeOutputIntoArray(long handle, int index, float[] out, int offset);

    private static native void nativeOutputDirect(
            long handle, int index, FloatBuffer out, int position, int remaining);
}
