package main

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The bars' colours by group.
var groupColors = map[string]color.Color{
	groupFleet:   color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	groupPeer:    color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	groupCeiling: color.RGBA{R: 0x99, G: 0x99, B: 0x99, A: 0xff},
}

// drawChart draws one horizontal bar chart per table: each contender's
// median (MB/s; objects/s for the small objects) with its min–max range,
// s3fleet in blue, the peers in orange, the ceiling in grey.
func (s *suite) drawChart(path string) error {
	const cols = 2
	rows := (len(s.cells) + cols - 1) / cols
	grid := make([][]*plot.Plot, rows)
	for i := range grid {
		grid[i] = make([]*plot.Plot, cols)
	}
	for i, cl := range s.cells {
		p, err := s.panel(cl)
		if err != nil {
			return err
		}
		grid[i/cols][i%cols] = p
	}
	if len(s.cells) == 1 {
		grid[0] = grid[0][:1]
	}
	width := 7 * vg.Inch * vg.Length(len(grid[0]))
	panelHeight := vg.Length(1.2+0.32*float64(len(s.contenders))) * vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(width, panelHeight*vg.Length(rows)), vgimg.UseDPI(110))
	dc := draw.New(img)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	tiles := draw.Tiles{Rows: rows, Cols: len(grid[0]), PadX: vg.Inch / 4, PadY: vg.Inch / 4,
		PadTop: vg.Inch / 8, PadBottom: vg.Inch / 8, PadLeft: vg.Inch / 8, PadRight: vg.Inch / 4}
	canvases := plot.Align(grid, tiles, dc)
	for r := range grid {
		for c := range grid[r] {
			if grid[r][c] != nil {
				grid[r][c].Draw(canvases[r][c])
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// errPoints are the bars' medians with their min–max range.
type errPoints struct {
	plotter.XYs
	plotter.XErrors
}

func (s *suite) panel(cl cell) (*plot.Plot, error) {
	p := plot.New()
	unit := "MB/s"
	if cl.w.id == "small" {
		unit = "objects/s"
	}
	p.Title.Text = cl.title()
	p.X.Label.Text = unit + " (median of the runs; whiskers: min–max)"
	p.X.Min = 0
	tab := s.table(cl)
	// The first contender on top.
	slices.Reverse(tab)
	var names []string
	var pts errPoints
	var labels plotter.XYLabels
	top := 0.0
	for i, st := range tab {
		names = append(names, st.contender.name)
		if len(st.ok) == 0 {
			labels.XYs = append(labels.XYs, plotter.XY{X: 0, Y: float64(i)})
			labels.Labels = append(labels.Labels, " failed")
			continue
		}
		xs := st.rate()
		m := median(xs)
		top = max(top, slices.Max(xs))
		bar, err := plotter.NewBarChart(plotter.Values{m}, vg.Points(11))
		if err != nil {
			return nil, err
		}
		bar.Horizontal = true
		bar.XMin = float64(i)
		bar.Color = groupColors[st.contender.group]
		bar.LineStyle.Width = 0
		p.Add(bar)
		pts.XYs = append(pts.XYs, plotter.XY{X: m, Y: float64(i)})
		pts.XErrors = append(pts.XErrors, struct{ Low, High float64 }{m - slices.Min(xs), slices.Max(xs) - m})
		labels.XYs = append(labels.XYs, plotter.XY{X: slices.Max(xs), Y: float64(i)})
		labels.Labels = append(labels.Labels, fmt.Sprintf(" %.0f", m))
	}
	if len(pts.XYs) > 0 {
		eb, err := plotter.NewXErrorBars(pts)
		if err != nil {
			return nil, err
		}
		eb.LineStyle.Width = vg.Points(1)
		p.Add(eb)
	}
	if len(labels.XYs) > 0 {
		l, err := plotter.NewLabels(labels)
		if err != nil {
			return nil, err
		}
		for i := range l.TextStyle {
			l.TextStyle[i].YAlign = draw.YCenter
		}
		p.Add(l)
	}
	p.X.Max = top * 1.15
	p.X.Tick.Marker = wholeTicks{}
	p.NominalY(names...)
	p.Y.Tick.Label.Font.Size = vg.Points(10)
	return p, nil
}

// wholeTicks are gonum's default ticks labelled without decimals.
type wholeTicks struct{}

func (wholeTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = strconv.FormatFloat(ts[i].Value, 'f', 0, 64)
		}
	}
	return ts
}
