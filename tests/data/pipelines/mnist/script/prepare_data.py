"""Writes a folder of small 'images' (the public example downloads mnist here)."""
import argparse
import os

parser = argparse.ArgumentParser()
parser.add_argument("--output_folder")
args = parser.parse_args()
for i in range(12):
    with open(os.path.join(args.output_folder, f"digit{i:02d}.png"), "w") as f:
        f.write(str(i % 10))
print(f"prepared 12 images in {args.output_folder}")
