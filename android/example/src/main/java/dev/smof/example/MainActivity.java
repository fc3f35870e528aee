package dev.smof.example;

import android.app.Activity;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.os.Bundle;
import android.os.SystemClock;
import android.widget.TextView;
import dev.smof.SmofModel;
import dev.smof.SmofSession;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;

/**
 * Loads assets/model.smof (mapped straight from the APK), turns assets/image.jpg into an
 * ImageNet-normalised NCHW tensor, runs the model and shows the top score and the latency.
 * Works for classifiers (top class) and backbones (embedding size and norm).
 */
public class MainActivity extends Activity {
    private static final float[] MEAN = {0.485f, 0.456f, 0.406f};
    private static final float[] STD = {0.229f, 0.224f, 0.225f};

    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        TextView view = new TextView(this);
        view.setPadding(32, 32, 32, 32);
        setContentView(view);
        // Inference off the UI thread.
        new Thread(() -> {
            String text;
            try {
                text = classify();
            } catch (Exception e) {
                text = "error: " + e;
            }
            final String result = text;
            runOnUiThread(() -> view.setText(result));
        }).start();
    }

    private String classify() throws Exception {
        long t0 = SystemClock.elapsedRealtimeNanos();
        try (SmofModel model = SmofModel.fromAsset(getAssets(), "model.smof");
                SmofSession session = new SmofSession(model)) {
            long t1 = SystemClock.elapsedRealtimeNanos();
            int[] shape = session.getInputShape(0); // [1, 3, H, W]
            int h = shape[2], w = shape[3];
            Bitmap bitmap;
            try (InputStream in = getAssets().open("image.jpg")) {
                bitmap = BitmapFactory.decodeStream(in);
            }
            FloatBuffer input = toTensor(Bitmap.createScaledBitmap(bitmap, w, h, true));
            float[] out = session.run(input); // warm-up run
            int runs = 10;
            long t2 = SystemClock.elapsedRealtimeNanos();
            for (int i = 0; i < runs; i++) out = session.run(input);
            long t3 = SystemClock.elapsedRealtimeNanos();

            int best = 0;
            double norm = 0;
            for (int i = 0; i < out.length; i++) {
                if (out[i] > out[best]) best = i;
                norm += out[i] * out[i];
            }
            return String.format(
                    "load + plan: %.1f ms\ninference: %.2f ms (mean of %d)\n"
                            + "output: %d values, top index %d (%.3f), L2 norm %.3f",
                    (t1 - t0) / 1e6, (t3 - t2) / 1e6 / runs, runs, out.length, best, out[best],
                    Math.sqrt(norm));
        }
    }

    /** ARGB bitmap to a direct NCHW float buffer with ImageNet normalisation. */
    private static FloatBuffer toTensor(Bitmap bmp) {
        int w = bmp.getWidth(), h = bmp.getHeight();
        int[] px = new int[w * h];
        bmp.getPixels(px, 0, w, 0, 0, w, h);
        FloatBuffer buf = ByteBuffer.allocateDirect(3 * w * h * 4)
                .order(ByteOrder.nativeOrder()).asFloatBuffer();
        for (int c = 0; c < 3; c++) {
            int shift = 16 - 8 * c; // R, G, B
            for (int i = 0; i < w * h; i++) {
                float v = ((px[i] >> shift) & 0xff) / 255f;
                buf.put((v - MEAN[c]) / STD[c]);
            }
        }
        buf.flip();
        return buf;
    }
}
