#!/bin/sh
# Regenerate the scripted operator's recordings with espeak-ng (Debian: apt install espeak-ng).
# 16 kHz mono 16-bit WAV; the scenarios name them relative to their own folder (audio/<name>.wav).
set -e
cd "$(dirname "$0")"
say() { espeak-ng -v "$1" -s "$2" -w "$3.tmp.wav" "$4" && sox "$3.tmp.wav" -r 16000 -c 1 -b 16 "$3.wav" && rm "$3.tmp.wav"; }
say en-us 150 raise_temperature "set reactor temperature to sixty five degrees"
say en-gb 150 too_hot "set reactor temperature to one hundred fifty degrees"
say en-us 150 stop_line "stop line one"
say en-gb 150 confirm "confirm"
say en-us 150 start_line "start line one"
say en-gb 150 slow_down "set line one speed to eighty percent"
say en-us 150 find_cracked_gears "find gears with cracks"
